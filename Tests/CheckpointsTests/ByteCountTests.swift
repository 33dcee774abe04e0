import Checkpoints
import Testing

/// Sizes for people: bytes as they are below 1 KiB, then two decimals of the largest unit.
@Test(arguments: [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (494_994, "483.39 KiB"),
                  (5 << 20, "5.00 MiB"), (3 << 29, "1.50 GiB"), (1 << 40, "1.00 TiB"), (1 << 50, "1024.00 TiB")])
func bytesAreFormattedInPowersOf1024(_ n: Int, _ expected: String) {
    #expect(formatBytes(n) == expected)
}
