import Foundation

/// The committed test fixtures (`Tests/Fixtures`): where they are and how to read them.
public enum Fixtures {
    /// The absolute path of `Tests/Fixtures`.
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Fixtures").path

    /// The absolute path of `relative`, a path inside `Tests/Fixtures`.
    public static func path(_ relative: String) -> String { root + "/" + relative }

    /// The bytes of the fixture file at `relative`.
    public static func data(_ relative: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path(relative)))
    }

    /// The JSON object in the fixture file at `relative`.
    public static func json(_ relative: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: data(relative)) as? [String: Any] else {
            throw TestInputError("\(relative) does not hold a JSON object")
        }
        return object
    }

    /// The non-empty lines of the text fixture at `relative`; at least one.
    public static func lines(_ relative: String) throws -> [String] {
        let text = try String(contentsOfFile: path(relative), encoding: .utf8)
        return try requireCases(text.split(separator: "\n").map(String.init), "lines of \(relative)")
    }
}

/// A test input (a fixture, a setting in the environment) that is missing, unreadable or not
/// what the tests expect.
public struct TestInputError: Error, CustomStringConvertible {
    /// What is wrong, naming the input.
    public let description: String

    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}
