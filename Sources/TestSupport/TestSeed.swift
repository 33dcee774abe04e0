import Foundation

/// The seed of a random test: `TESSERA_TEST_SEED` when the environment sets it, else the
/// test's own seed, else a fresh random one. The seed is printed, so a failing run can be
/// repeated with `TESSERA_TEST_SEED=<seed> swift test --filter <test>`.
public enum TestSeed {
    /// The environment variable that sets the seed of every random test.
    public static let variable = "TESSERA_TEST_SEED"

    /// The seed for the test `name` (printed with it); `fallback` when the environment sets none.
    public static func value(_ name: String = #function, fallback: UInt64? = nil) throws -> UInt64 {
        let seed: UInt64
        if let text = ProcessInfo.processInfo.environment[variable] {
            guard let given = UInt64(text) else { throw TestInputError("\(variable)=\(text) is not an unsigned 64-bit number") }
            seed = given
        } else {
            seed = fallback ?? UInt64.random(in: 0...UInt64.max)
        }
        print("\(name): \(variable)=\(seed)")
        return seed
    }

    /// A generator seeded with `value(name, fallback:)`.
    public static func generator(_ name: String = #function, fallback: UInt64? = nil) throws -> SplitMix {
        SplitMix(seed: try value(name, fallback: fallback))
    }
}
