import Platform

/// A JSON value that keeps object key order and number spelling, and serialises as
/// Python's `json.dumps` does by default (so rewritten JSONL lines match NeMo-Aligner's).
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number, kept as written.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.python == b.python }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    /// Sets (or appends) `key`.
    public mutating func set(_ key: String, _ value: JSONValue) {
        guard case .object(var fields) = self else { return }
        if let i = fields.firstIndex(where: { $0.0 == key }) { fields[i].1 = value } else { fields.append((key, value)) }
        self = .object(fields)
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var isNull: Bool { if case .null = self { true } else { false } }

    /// A number from a Double, spelled as Python's `repr(float)`.
    public static func double(_ d: Double) -> JSONValue {
        if d.isNaN { return .number("NaN") }
        if d.isInfinite { return .number(d > 0 ? "Infinity" : "-Infinity") }
        var s = "\(d)"
        if s.hasSuffix(".0") && (d >= 1e16 || d <= -1e16) { s = String(s.dropLast(2)) }
        return .number(s)
    }

    /// `json.dumps(value)`: separators ", " and ": ", non-ASCII escaped as \uXXXX.
    public var python: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): Self.quote(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() { if i > 0 { out += ", " }; v.write(into: &out) }
            out += "]"
        case .object(let fields):
            out += "{"
            for (i, (k, v)) in fields.enumerated() {
                if i > 0 { out += ", " }
                Self.quote(k, into: &out)
                out += ": "
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        // Fast path: printable ASCII without quotes or backslashes is written as is.
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
            out += "\""
            out += s
            out += "\""
            return
        }
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value > 0x7E {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - h.count) + h
    }

    /// Parses one JSON text.
    public static func parse(_ text: String) throws(TesseraError) -> JSONValue {
        var p = Parser(bytes: Array(text.utf8))
        p.skipSpace()
        let v = try p.value()
        p.skipSpace()
        guard p.pos == p.bytes.count else { throw p.fail("trailing characters") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        var pos = 0
        /// Arrays and objects open around the current value: nesting is untrusted, and each
        /// level is a level of recursion here and wherever the value is walked.
        var depth = 0
        static let maxDepth = 256

        mutating func enter() throws(TesseraError) {
            depth += 1
            guard depth <= Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
        }

        func fail(_ what: String) -> TesseraError { TesseraError(.corrupt, "invalid JSON at byte \(pos): \(what)") }

        mutating func skipSpace() { while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 } }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard pos + w.count <= bytes.count, Array(bytes[pos..<(pos + w.count)]) == w else { return false }
            pos += w.count
            return true
        }

        /// After a member of an array or object (`kind`): true at its `close` and false at a
        /// `,` before the next member, either consumed; anything else is an error.
        mutating func endOfMember(_ close: UInt8, in kind: String) throws(TesseraError) -> Bool {
            skipSpace()
            guard pos < bytes.count else { throw fail("unterminated \(kind)") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; return false }
            if bytes[pos] == close { pos += 1; return true }
            throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))'")
        }

        mutating func value() throws(TesseraError) -> JSONValue {
            guard pos < bytes.count else { throw fail("unexpected end") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                try enter()
                defer { depth -= 1 }
                var fields: [(String, JSONValue)] = []
                skipSpace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(fields) }
                while true {
                    skipSpace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let k = try string()
                    skipSpace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    pos += 1
                    skipSpace()
                    fields.append((k, try value()))
                    if try endOfMember(UInt8(ascii: "}"), in: "object") { return .object(fields) }
                }
            case UInt8(ascii: "["):
                pos += 1
                try enter()
                defer { depth -= 1 }
                var items: [JSONValue] = []
                skipSpace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value())
                    if try endOfMember(UInt8(ascii: "]"), in: "array") { return .array(items) }
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            default:
                if literal("null") { return .null }
                if literal("true") { return .bool(true) }
                if literal("false") { return .bool(false) }
                for w in ["NaN", "Infinity", "-Infinity"] where literal(w) { return .number(w) }
                let start = pos
                while pos < bytes.count, "+-0123456789.eE".utf8.contains(bytes[pos]) { pos += 1 }
                guard pos > start else { throw fail("unexpected character") }
                return .number(String(decoding: bytes[start..<pos], as: UTF8.self))
            }
        }

        mutating func hex4() throws(TesseraError) -> UInt32 {
            guard pos + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<(pos + 4)], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            pos += 4
            return v
        }

        mutating func string() throws(TesseraError) -> String {
            pos += 1
            var scalars = String.UnicodeScalarView()
            var raw: [UInt8] = []
            func flush() { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
            while pos < bytes.count {
                let b = bytes[pos]
                if b == UInt8(ascii: "\"") { pos += 1; flush(); return String(scalars) }
                if b == UInt8(ascii: "\\") {
                    flush()
                    pos += 1
                    guard pos < bytes.count else { break }
                    let e = bytes[pos]; pos += 1
                    switch e {
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "u"):
                        var v = try hex4()
                        // A high surrogate takes the next escape only when that is a low one;
                        // otherwise each stands alone (a lone surrogate becomes U+FFFD, which a
                        // Swift string can hold where Python's keeps the code point).
                        if (0xD800..<0xDC00).contains(v), pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                            let next = pos
                            pos += 2
                            let lo = try hex4()
                            if (0xDC00..<0xE000).contains(lo) { v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00) } else { pos = next }
                        }
                        scalars.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                    default: scalars.append(Unicode.Scalar(e))
                    }
                    continue
                }
                raw.append(b)
                pos += 1
            }
            throw fail("unterminated string")
        }
    }
}
