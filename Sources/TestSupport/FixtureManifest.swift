import Foundation

/// One checkpoint fixture as `Tests/Fixtures/tiny/manifest.json` lists it.
public struct FixtureCheckpoint: Sendable, Equatable {
    /// Its folder (or .nemo file) name.
    public let name: String
    /// Its path inside `Tests/Fixtures`, as the manifest gives it.
    public let relativePath: String
    /// `legacy`, `zarr` or `torch_dist`.
    public let format: String
    /// `folder` or `tar`.
    public let container: String
    /// Tensor- and pipeline-parallel sizes.
    public let tp: Int, pp: Int
    /// `bf16` or `fp32`.
    public let dtype: String
    /// `te` or `local`.
    public let keySpelling: String

    /// Its absolute path.
    public var path: String { Fixtures.path(relativePath) }

    init(_ entry: [String: Any]) throws {
        func field<T>(_ key: String) throws -> T {
            guard let value = entry[key] as? T else { throw TestInputError("a manifest fixture lacks \(key): \(entry)") }
            return value
        }
        (name, relativePath, format, container) = (try field("name"), try field("path"), try field("format"), try field("container"))
        (tp, pp, dtype, keySpelling) = (try field("tp"), try field("pp"), try field("dtype"), try field("key_spelling"))
    }
}

extension Fixtures {
    /// The manifest of the tiny fixtures.
    public static let manifestPath = "tiny/manifest.json"

    /// Every checkpoint fixture the manifest lists, in its order; at least one, each complete.
    public static func checkpoints() throws -> [FixtureCheckpoint] {
        guard let entries = try json(manifestPath)["fixtures"] as? [[String: Any]] else {
            throw TestInputError("\(manifestPath) has no list of fixtures")
        }
        return try requireCases(try entries.map(FixtureCheckpoint.init), "checkpoint fixtures in \(manifestPath)")
    }

    /// The first checkpoint fixture, in manifest order, that `matches`.
    public static func checkpoint(where matches: (FixtureCheckpoint) -> Bool) throws -> FixtureCheckpoint {
        guard let found = try checkpoints().first(where: matches) else {
            throw TestInputError("no checkpoint fixture in \(manifestPath) is the one asked for")
        }
        return found
    }

    /// The first folder fixture of `format` at TP=`tp`, PP=`pp`.
    public static func checkpoint(format: String, tp: Int, pp: Int) throws -> FixtureCheckpoint {
        try checkpoint { $0.format == format && $0.tp == tp && $0.pp == pp && $0.container == "folder" }
    }

    /// The paths (inside `Tests/Fixtures`) of the inputs the manifest lists as bad; at least one.
    public static func badInputs() throws -> [String] {
        guard let entries = try json(manifestPath)["bad"] as? [[String: Any]] else {
            throw TestInputError("\(manifestPath) has no list of bad inputs")
        }
        return try requireCases(try entries.map { entry in
            guard let path = entry["path"] as? String else { throw TestInputError("a bad input lacks its path: \(entry)") }
            return path
        }, "bad inputs in \(manifestPath)")
    }
}
