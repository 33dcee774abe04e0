import Glibc

/// A failure with a stable code, a human message and the context needed to act on it
/// (the file, the tensor, what was expected).
public struct TesseraError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Stable failure categories; scripts may match on `rawValue`.
    public enum Code: String, Sendable {
        case io = "io"
        case corrupt = "corrupt"
        case forbiddenGlobal = "forbidden-global"
        case unsupported = "unsupported"
        case inconsistent = "inconsistent"
        case missing = "missing"
        case invalidArgument = "invalid-argument"
        case outOfBounds = "out-of-bounds"
        case outOfMemory = "out-of-memory"
    }

    public var code: Code
    public var message: String
    /// The file the problem was found in, when there is one.
    public var file: String?
    /// The tensor (or object) concerned, when there is one.
    public var tensor: String?
    /// The operating system's error number (`errno`) behind an I/O failure, when there is one.
    public var errorNumber: Int32?

    public init(_ code: Code, _ message: String, file: String? = nil, tensor: String? = nil, errorNumber: Int32? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.tensor = tensor
        self.errorNumber = errorNumber
    }

    /// An I/O failure from a system call: "`what`: <strerror>", with `number` kept as data.
    public static func system(_ what: String, file: String?, errorNumber number: Int32) -> TesseraError {
        TesseraError(.io, "\(what): \(String(cString: strerror(number)))", file: file, errorNumber: number)
    }

    /// The same error with a file attached, unless it already names one.
    public func inFile(_ path: String) -> TesseraError {
        var copy = self
        if copy.file == nil { copy.file = path }
        return copy
    }

    /// The same error with a tensor attached, unless it already names one.
    public func forTensor(_ name: String) -> TesseraError {
        var copy = self
        if copy.tensor == nil { copy.tensor = name }
        return copy
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let tensor { parts.append("tensor '\(tensor)'") }
        let prefix = parts.isEmpty ? "" : parts.joined(separator: ": ") + ": "
        return "\(prefix)\(message) [\(code.rawValue)]"
    }
}
