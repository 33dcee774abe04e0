import Platform

/// A pickle reader that builds values and executes nothing.
///
/// It understands the opcodes of protocols 2 to 5 that `torch.save`,
/// `torch.distributed.checkpoint` and megatron-core emit; globals outside
/// ``allowedGlobals`` are refused with their name.
public struct Unpickler {
    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private let persistentLoad: (PickleValue) throws(TesseraError) -> PickleValue
    private var cycles: ReferenceCycleGuard

    /// Reads the pickle in `bytes`; `persistentLoad` resolves persistent ids (torch storages).
    public static func load(
        _ bytes: UnsafeRawBufferPointer,
        persistentLoad: @escaping (PickleValue) throws(TesseraError) -> PickleValue = { _ throws(TesseraError) in
            throw TesseraError(.corrupt, "pickle has a persistent id but no storages to resolve it")
        }
    ) throws(TesseraError) -> PickleValue {
        var u = Unpickler(bytes: bytes, persistentLoad: persistentLoad)
        return try u.run()
    }

    private init(bytes: UnsafeRawBufferPointer,
                 persistentLoad: @escaping (PickleValue) throws(TesseraError) -> PickleValue) {
        self.bytes = bytes
        self.persistentLoad = persistentLoad
        cycles = ReferenceCycleGuard(pickleBytes: bytes.count)
    }

    private func bad(_ what: String) -> TesseraError {
        TesseraError(.corrupt, "bad pickle at byte \(pos): \(what)")
    }

    private mutating func byte() throws(TesseraError) -> UInt8 {
        guard pos < bytes.count else { throw bad("unexpected end of data") }
        defer { pos += 1 }
        return bytes[pos]
    }

    private mutating func take(_ n: Int) throws(TesseraError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else { throw bad("needs \(n) bytes, \(bytes.count - pos) left") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }

    private mutating func uint(_ size: Int) throws(TesseraError) -> Int {
        let b = try take(size)
        var v: UInt64 = 0
        for i in (0..<size).reversed() { v = (v << 8) | UInt64(b[i]) }
        guard v <= UInt64(Int.max) else { throw bad("length \(v) too large") }
        return Int(v)
    }

    private mutating func line() throws(TesseraError) -> String {
        var end = pos
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { throw bad("unterminated line") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self)
        pos = end + 1
        return s
    }

    private mutating func pop() throws(TesseraError) -> PickleValue {
        guard let v = stack.popLast() else { throw bad("stack underflow") }
        return v
    }

    private mutating func popMark() throws(TesseraError) -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw bad("no mark") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private var top: PickleValue? { stack.last }

    private func global(_ module: String, _ name: String) throws(TesseraError) -> PickleValue {
        guard allowedGlobals["\(module).\(name)"] != nil else {
            throw TesseraError(.forbiddenGlobal,
                "pickle references the global '\(module).\(name)', which no checkpoint legitimately contains; refusing to load it")
        }
        return .global(module: module, name: name)
    }

    private static func longValue(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for i in (0..<b.count).reversed() { v = (v << 8) | UInt64(b[i]) }
            if b.count < 8, b[b.count - 1] & 0x80 != 0 { v |= ~UInt64(0) << UInt64(8 * b.count) }
            return .int(Int(bitPattern: UInt(v)))
        }
        return .bigInt(Array(b))
    }

    private mutating func run() throws(TesseraError) -> PickleValue {
        while true {
            let op = try byte()
            if op == 0x2E { return try pop() }                          // STOP
            guard try execute(op) else {
                throw bad("opcode 0x\(String(op, radix: 16)) is not used by checkpoints and is refused")
            }
        }
    }

    /// Runs one opcode other than STOP; false when it is not one checkpoints use.
    private mutating func execute(_ op: UInt8) throws(TesseraError) -> Bool {
        if try stackOrNumber(op) { return true }
        if try textOrBytes(op) { return true }
        if try tupleOrList(op) { return true }
        if try dictOrSet(op) { return true }
        if try objectOrMemo(op) { return true }
        return false
    }

    /// Framing, marks and the stack; None, booleans, integers and floats.
    private mutating func stackOrNumber(_ op: UInt8) throws(TesseraError) -> Bool {
        switch op {
        case 0x80: _ = try byte()                                   // PROTO
        case 0x95: _ = try take(8)                                  // FRAME
        case 0x28: marks.append(stack.count)                        // MARK
        case 0x30: _ = try pop()                                    // POP
        case 0x31: _ = try popMark()                                // POP_MARK
        case 0x32: guard let t = top else { throw bad("DUP on empty stack") }; stack.append(t)
        case 0x4E: stack.append(.none)                              // NONE
        case 0x88: stack.append(.bool(true))                        // NEWTRUE
        case 0x89: stack.append(.bool(false))                       // NEWFALSE
        case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))   // BININT
        case 0x4B: stack.append(.int(Int(try byte())))             // BININT1
        case 0x4D: stack.append(.int(try uint(2)))                  // BININT2
        case 0x49:                                                  // INT
            let s = try line()
            if s == "00" { stack.append(.bool(false)) } else if s == "01" { stack.append(.bool(true)) }
            else { guard let i = Int(s) else { throw bad("INT '\(s)'") }; stack.append(.int(i)) }
        case 0x4C:                                                  // LONG
            var s = try line(); if s.hasSuffix("L") { s.removeLast() }
            guard let i = Int(s) else { throw bad("LONG '\(s)' too large") }
            stack.append(.int(i))
        case 0x8A: let n = Int(try byte()); stack.append(Self.longValue(try take(n)))   // LONG1
        case 0x8B: let n = try uint(4); stack.append(Self.longValue(try take(n)))       // LONG4
        case 0x47:                                                  // BINFLOAT (big-endian)
            let b = try take(8)
            var v: UInt64 = 0
            for i in 0..<8 { v = (v << 8) | UInt64(b[i]) }
            stack.append(.float(Double(bitPattern: v)))
        case 0x46:                                                  // FLOAT
            let s = try line(); guard let d = Double(s) else { throw bad("FLOAT '\(s)'") }
            stack.append(.float(d))
        default: return false
        }
        return true
    }

    /// Strings (unicode and protocol-2 byte strings) and bytes.
    private mutating func textOrBytes(_ op: UInt8) throws(TesseraError) -> Bool {
        switch op {
        case 0x58: let n = try uint(4); stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
        case 0x8C: let n = Int(try byte()); stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
        case 0x8D: let n = try uint(8); stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
        case 0x54: let n = try uint(4); stack.append(.string(String(decoding: try take(n), as: UTF8.self)))  // BINSTRING
        case 0x55: let n = Int(try byte()); stack.append(.string(String(decoding: try take(n), as: UTF8.self)))  // SHORT_BINSTRING
        case 0x42: let n = try uint(4); stack.append(.bytes(Array(try take(n))))       // BINBYTES
        case 0x43: let n = Int(try byte()); stack.append(.bytes(Array(try take(n))))  // SHORT_BINBYTES
        case 0x8E, 0x96: let n = try uint(8); stack.append(.bytes(Array(try take(n)))) // BINBYTES8, BYTEARRAY8
        default: return false
        }
        return true
    }

    /// Tuples and lists.
    private mutating func tupleOrList(_ op: UInt8) throws(TesseraError) -> Bool {
        switch op {
        case 0x29: stack.append(.tuple([]))                         // EMPTY_TUPLE
        case 0x74: stack.append(.tuple(try popMark()))              // TUPLE
        case 0x85: stack.append(.tuple([try pop()]))                // TUPLE1
        case 0x86: let b = try pop(); let a = try pop(); stack.append(.tuple([a, b]))
        case 0x87: let c = try pop(); let b = try pop(); let a = try pop(); stack.append(.tuple([a, b, c]))
        case 0x5D: stack.append(.list(PickleList()))                // EMPTY_LIST
        case 0x6C: stack.append(.list(PickleList(try popMark())))   // LIST
        case 0x61:                                                  // APPEND
            let v = try pop()
            guard case .list(let l)? = top else { throw bad("APPEND to a non-list") }
            try refuseCycle([v], into: l)
            l.items.append(v)
        case 0x65:                                                  // APPENDS
            let vs = try popMark()
            guard case .list(let l)? = top else { throw bad("APPENDS to a non-list") }
            try refuseCycle(vs, into: l)
            l.items.append(contentsOf: vs)
        default: return false
        }
        return true
    }

    /// Dicts and sets.
    private mutating func dictOrSet(_ op: UInt8) throws(TesseraError) -> Bool {
        switch op {
        case 0x7D: stack.append(.dict(PickleDict(ordered: false)))  // EMPTY_DICT
        case 0x64:                                                  // DICT
            let vs = try popMark()
            guard vs.count % 2 == 0 else { throw bad("DICT with odd item count") }
            let d = PickleDict(ordered: false)
            for i in stride(from: 0, to: vs.count, by: 2) { d.set(vs[i], vs[i + 1]) }
            stack.append(.dict(d))
        case 0x73:                                                  // SETITEM
            let v = try pop(); let k = try pop()
            guard case .dict(let d)? = top else { throw bad("SETITEM on a non-dict") }
            try refuseCycle([k, v], into: d)
            d.set(k, v)
        case 0x75:                                                  // SETITEMS
            let vs = try popMark()
            guard vs.count % 2 == 0 else { throw bad("SETITEMS with odd item count") }
            guard case .dict(let d)? = top else { throw bad("SETITEMS on a non-dict") }
            try refuseCycle(vs, into: d)
            for i in stride(from: 0, to: vs.count, by: 2) { d.set(vs[i], vs[i + 1]) }
        case 0x8F: stack.append(.set([]))                           // EMPTY_SET
        case 0x90:                                                  // ADDITEMS
            let vs = try popMark()
            guard case .set(let s)? = stack.popLast() else { throw bad("ADDITEMS on a non-set") }
            stack.append(.set(s + vs))
        case 0x91: stack.append(.set(try popMark()))                // FROZENSET
        default: return false
        }
        return true
    }

    /// Globals, calls, object state, persistent ids and the memo.
    private mutating func objectOrMemo(_ op: UInt8) throws(TesseraError) -> Bool {
        switch op {
        case 0x63:                                                  // GLOBAL
            let module = try line(); let name = try line()
            stack.append(try global(module, name))
        case 0x93:                                                  // STACK_GLOBAL
            let name = try pop(); let module = try pop()
            guard let m = module.string, let n = name.string else { throw bad("STACK_GLOBAL needs strings") }
            stack.append(try global(m, n))
        case 0x52:                                                  // REDUCE
            let args = try pop(); let callable = try pop()
            stack.append(try call(callable, args: args.elements ?? [args], newObject: false))
        case 0x81:                                                  // NEWOBJ
            let args = try pop(); let cls = try pop()
            stack.append(try call(cls, args: args.elements ?? [], newObject: true))
        case 0x92:                                                  // NEWOBJ_EX
            _ = try pop(); let args = try pop(); let cls = try pop()
            stack.append(try call(cls, args: args.elements ?? [], newObject: true))
        case 0x62:                                                  // BUILD
            let state = try pop()
            guard let target = top else { throw bad("BUILD on empty stack") }
            try build(target, state: state)
        case 0x51: stack.append(try persistentLoad(try pop()))     // BINPERSID
        case 0x50: stack.append(try persistentLoad(.string(try line())))  // PERSID
        case 0x71: memo[Int(try byte())] = top                      // BINPUT
        case 0x72: memo[try uint(4)] = top                          // LONG_BINPUT
        case 0x70: guard let i = Int(try line()) else { throw bad("PUT") }; memo[i] = top
        case 0x94: memo[memo.count] = top                           // MEMOIZE
        case 0x68, 0x6A, 0x67:                                      // BINGET, LONG_BINGET, GET
            let key: Int
            if op == 0x68 { key = Int(try byte()) } else if op == 0x6A { key = try uint(4) }
            else { guard let i = Int(try line()) else { throw bad("GET") }; key = i }
            guard let v = memo[key] else { throw bad("memo key \(key) missing") }
            stack.append(v)
        default: return false
        }
        return true
    }

    private func call(_ callable: PickleValue, args: [PickleValue], newObject: Bool) throws(TesseraError) -> PickleValue {
        guard case .global(let module, let name) = callable, let role = allowedGlobals["\(module).\(name)"] else {
            throw bad("call of a non-global")
        }
        switch role {
        case .orderedDict:
            let d = PickleDict(ordered: true)
            if let items = args.first?.elements {
                for item in items { if let kv = item.elements, kv.count == 2 { d.set(kv[0], kv[1]) } }
            }
            return .dict(d)
        case .codecsEncode:
            guard let s = args.first?.string else { throw bad("_codecs.encode needs a string") }
            // Protocol 2 writes bytes as their latin-1 decoding; each scalar is one byte.
            var out: [UInt8] = []
            for u in s.unicodeScalars {
                guard u.value < 256 else { throw bad("_codecs.encode of a non-latin-1 string") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case .bytesClass:
            if args.isEmpty { return .bytes([]) }
            if case .bytes(let b) = args[0] { return .bytes(b) }
            if case .list(let l) = args[0] { return .bytes(l.items.compactMap { $0.int.map { UInt8(truncatingIfNeeded: $0) } }) }
            throw bad("bytes() of an unsupported argument")
        case .setClass, .frozensetClass:
            return .set(args.first?.elements ?? [])
        case .torchSize:
            return .tuple(args.first?.elements ?? [])
        case .layoutByName:
            guard let full = args.first?.string, full.hasPrefix("torch."),
                  allowedGlobals[full] != nil else { throw bad("_get_layout of an unknown layout") }
            return .global(module: "torch", name: String(full.dropFirst(6)))
        case .rebuildTensorV2, .rebuildTensorV3:
            return try rebuildTensor(args, v3: role.isV3)
        case .rebuildParameter:
            guard let t = args.first, case .tensor = t else { throw bad("_rebuild_parameter without a tensor") }
            return t
        case .objectClass:
            return .object(PickleObject(module: module, name: name, args: args))
        case .storageClass, .constant:
            if newObject { return .object(PickleObject(module: module, name: name, args: args)) }
            throw bad("'\(module).\(name)' cannot be called")
        }
    }

    private func rebuildTensor(_ a: [PickleValue], v3: Bool) throws(TesseraError) -> PickleValue {
        guard a.count >= 4, case .storage(let storage) = a[0], let offset = a[1].int,
              let shape = a[2].ints, let strides = a[3].ints, shape.count == strides.count else {
            throw bad("_rebuild_tensor arguments are not (storage, offset, size, stride, ...)")
        }
        var dtype = storage.dtype
        if v3 {
            guard a.count >= 7, case .global(_, let dn) = a[6], let d = DType(torchName: dn) else {
                throw bad("_rebuild_tensor_v3 without a dtype")
            }
            dtype = d
        }
        // Sizes are untrusted: every dimension a size, their product and the view's reach
        // computed without overflow.
        guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else { throw bad("negative size or stride") }
        var elements = 1
        for n in shape {
            let (p, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow else { throw bad("tensor size \(shape) overflows") }
            elements = p
        }
        let t = TensorRecord(storage: storage, dtype: dtype, storageOffset: offset, shape: shape, strides: strides)
        // The furthest element the view touches must lie inside the storage.
        let storageElements = storage.bytes.count / dtype.size
        if elements > 0 {
            var last = offset
            for (n, s) in zip(shape, strides) {
                let (step, o1) = (n - 1).multipliedReportingOverflow(by: s)
                let (sum, o2) = last.addingReportingOverflow(step)
                guard !o1, !o2 else { throw bad("tensor view \(shape) with strides \(strides) overflows") }
                last = sum
            }
            guard offset >= 0, last < storageElements else {
                throw TesseraError(.outOfBounds,
                    "tensor view (offset \(offset), shape \(shape), strides \(strides)) reaches element \(last) of a storage of \(storageElements) elements (record data/\(storage.key))")
            }
        }
        return .tensor(t)
    }

    /// Refuses to put `values` into `container` when that would make a reference cycle.
    private mutating func refuseCycle(_ values: [PickleValue], into container: AnyObject) throws(TesseraError) {
        if let why = cycles.problem(putting: values, into: container) { throw bad(why) }
    }

    private mutating func build(_ target: PickleValue, state: PickleValue) throws(TesseraError) {
        switch target {
        case .object(let o):
            try refuseCycle([state], into: o)
            o.state = state
        case .dict(let d):
            // OrderedDict state: (None, {attr: value}) or {attr: value}, e.g. `_metadata`.
            var attrs: PickleDict?
            if let dd = state.dict { attrs = dd }
            else if let parts = state.elements { attrs = parts.compactMap(\.dict).first }
            if let attrs {
                try refuseCycle(attrs.items.flatMap { [$0.key, $0.value] }, into: d)
                d.attributes.append(contentsOf: attrs.items)
            }
        case .tensor:
            break   // tensor state (requires_grad, hooks) does not change its bytes
        default:
            throw bad("BUILD on a value that has no state")
        }
    }
}
