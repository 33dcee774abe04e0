import Platform
import Scoring
import Testing

/// Nesting in scoring JSONL is untrusted: past 256 levels it is refused as corrupt (a deeply
/// nested line used to recurse until the stack ran out); 256 levels still parse.
@Test func deepNestingIsRefusedNotCrashedOn() throws {
    let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
    #expect(ok.count == 512)
    _ = try JSONValue.parse(ok)
    for open in ["[", "{\"a\":"] {
        let deep = String(repeating: open, count: 100_000)
        do {
            _ = try JSONValue.parse(deep)
            Issue.record("100000 levels of \(open) were accepted")
        } catch {
            #expect(error.code == .corrupt && error.message.contains("nested deeper"), "\(error)")
        }
    }
}
