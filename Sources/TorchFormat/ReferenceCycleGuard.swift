/// Keeps a damaged pickle from tying its containers into a reference cycle, which would
/// never be freed (a leak, not a model): before `values` go into a container, none of them
/// may reach it. A container that is new cannot be reached, so only mutations of existing
/// ones (APPEND, SETITEM, BUILD, ...) are checked. The values visited are bounded by a budget
/// proportional to the pickle's size, so damaged input cannot make the checks quadratic.
struct ReferenceCycleGuard {
    private var budget: Int

    /// A guard for a pickle of `size` bytes.
    init(pickleBytes size: Int) { budget = 4 * size + 100_000 }

    /// Why `values` may not go into `container` (nil when they may).
    mutating func problem(putting values: [PickleValue], into container: AnyObject) -> String? {
        var pending = values
        var seen = Set<ObjectIdentifier>()
        while let v = pending.popLast() {
            budget -= 1
            guard budget >= 0 else { return "too many shared references to check for cycles" }
            let object: AnyObject?, children: () -> [PickleValue]
            switch v {
            case .list(let l): (object, children) = (l, { l.items })
            case .dict(let d): (object, children) = (d, { (d.items + d.attributes).flatMap { [$0.key, $0.value] } })
            case .object(let o): (object, children) = (o, { o.args + (o.state.map { [$0] } ?? []) })
            case .tuple(let t), .set(let t): (object, children) = (nil, { t })
            default: continue
            }
            guard let object else { pending += children(); continue }
            if object === container { return "a container would contain itself (reference cycle)" }
            if seen.insert(ObjectIdentifier(object)).inserted { pending += children() }
        }
        return nil
    }
}
