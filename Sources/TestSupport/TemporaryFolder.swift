import Foundation

/// A new empty folder in the temporary directory (`TMPDIR`), removed with everything in it
/// when the value is released (at the end of the test that holds it).
public final class TemporaryFolder: Sendable {
    /// The folder's absolute path.
    public let path: String

    /// Creates `tessera-<label>-<UUID>` in `parent`, else in the temporary directory.
    public init(_ label: String = "test", in parent: String? = nil) throws {
        let base = parent.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory
        path = base.appendingPathComponent("tessera-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The path of `name` inside the folder.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Copies the file or folder at `source` into this folder (as `name`, else under its own
    /// name) and returns the copy's path.
    public func copy(_ source: String, as name: String? = nil) throws -> String {
        let destination = file(name ?? URL(fileURLWithPath: source).lastPathComponent)
        try FileManager.default.copyItem(atPath: source, toPath: destination)
        return destination
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
