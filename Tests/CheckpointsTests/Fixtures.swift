import Foundation
import Testing

/// Paths and documents of the committed fixtures (`Tests/Fixtures`).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    static func path(_ rel: String) -> String { root + "/" + rel }

    static func json(_ rel: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(rel)))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Every checkpoint fixture listed in the manifest.
    static var checkpoints: [[String: Any]] {
        guard let m = try? json("tiny/manifest.json"), let f = m["fixtures"] as? [[String: Any]] else { return [] }
        return f
    }

    static var checkpointPaths: [String] { checkpoints.compactMap { $0["path"] as? String } }

    /// A fresh copy of a fixture in a temporary folder, for tests that damage it.
    static func scratchCopy(_ rel: String) throws -> String {
        let dir = NSTemporaryDirectory() + "tessera-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let dst = dir + "/" + URL(fileURLWithPath: rel).lastPathComponent
        try FileManager.default.copyItem(atPath: path(rel), toPath: dst)
        return dst
    }
}
