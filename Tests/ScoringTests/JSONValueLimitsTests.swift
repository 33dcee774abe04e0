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

/// A high surrogate escape takes the next escape only when that is a low surrogate (found by
/// Tools/fuzz.sh: `\uD88B\uD88B` subtracted past zero and trapped, ending `score` with SIGILL);
/// a surrogate that pairs with nothing becomes U+FFFD, the characters after it are kept.
@Test(arguments: [(#""\uD83D\uDE00""#, "\u{1F600}"), (#""\uD88B\uD88B""#, "\u{FFFD}\u{FFFD}"),
                  (#""a\uD88B\u0041b""#, "a\u{FFFD}Ab"), (#""\uDC00x""#, "\u{FFFD}x"), (#""\uD800""#, "\u{FFFD}"),
                  (#""\uD800\uE000""#, "\u{FFFD}\u{E000}")])
func surrogateEscapesPairOnlyWithTheirOtherHalf(_ json: String, _ expected: String) throws {
    #expect(try JSONValue.parse(json) == .string(expected))
}
