import Foundation
import Platform
import Scoring
import Testing
import Verification

@Test func probesAreSemicolonSeparatedListsOfIds() throws {
    #expect(try Verifier.probes(parsing: "1,2,3;4, 5") == [[1, 2, 3], [4, 5]])
    #expect(try Verifier.probes(parsing: "7") == [[7]])
    // Empty lists between separators are passed over, as are entries that are not ids.
    #expect(try Verifier.probes(parsing: "1,2;;3") == [[1, 2], [3]])
    #expect(try Verifier.probes(parsing: "1,x,2") == [[1, 2]])
    #expect(try Verifier.probes(parsing: "") == [])
}

@Test(arguments: ["x", "1;x", "1;,"])
func aProbeWithoutIdsIsRefused(_ text: String) {
    do throws(TesseraError) {
        _ = try Verifier.probes(parsing: text)
        Issue.record("'\(text)' was accepted")
    } catch {
        #expect(error.code == .invalidArgument && error.message == "bad --probes '\(text)'")
    }
}

@Test func promptsAreReadLineByLine() throws {
    let list = try Verifier.Prompts.conversations(in: "{\"conversations\": []}\n\n[1, 2]\n", file: "p.jsonl")
    #expect(list.count == 2)
    #expect(list[0]["conversations"]?.array?.isEmpty == true)
    #expect(list[1].array?.count == 2)
}

@Test func aBadPromptLineIsNamedByItsPlaceAmongTheOthers() {
    do throws(TesseraError) {
        _ = try Verifier.Prompts.conversations(in: "{}\n\n{oops\n", file: "p.jsonl")
        Issue.record("a bad line was accepted")
    } catch {
        #expect(error.code == .corrupt && error.message.hasPrefix("line 2: ") && error.file == "p.jsonl", "\(error)")
    }
}

@Test func promptFilesAreReadFromDisk() throws {
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny/reference/conversations.jsonl").path
    #expect(try Verifier.Prompts.conversations(inFile: fixture).count == 8)
    do throws(TesseraError) {
        _ = try Verifier.Prompts.conversations(inFile: "/nonexistent/prompts.jsonl")
        Issue.record("a missing file was read")
    } catch {
        #expect(error.code == .missing && error.file == "/nonexistent/prompts.jsonl")
    }
}

/// Statuses in report order; only real differences (not rounding, not padding) count against.
@Test func statusesInReportOrder() {
    #expect(TensorComparison.Status.allCases == [.identical, .equalAfterRounding, .paddingDiffers, .different, .missingInA, .missingInB])
    #expect(TensorComparison.Status.allCases.filter(\.isDifference) == [.different, .missingInA, .missingInB])
}
