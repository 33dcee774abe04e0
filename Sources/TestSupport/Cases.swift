/// `cases` itself when it holds at least `minimum` elements; otherwise an error naming `what`.
/// For the arguments of a parameterised test and the data a test loops over: an empty list
/// would let the test pass having checked nothing (swift-testing skips a test with no cases).
@discardableResult
public func requireCases<C: Collection>(_ cases: C, _ what: String, atLeast minimum: Int = 1) throws -> C {
    guard cases.count >= minimum else { throw NoCases(what: what, count: cases.count, minimum: minimum) }
    return cases
}

/// A parameterised or data-driven test was given fewer cases than it needs.
public struct NoCases: Error, CustomStringConvertible {
    /// What the cases are.
    public let what: String
    /// How many there were and how many are needed.
    public let count: Int, minimum: Int

    /// Says what gave too few cases.
    public var description: String { "\(what): \(count) cases, at least \(minimum) needed" }
}
