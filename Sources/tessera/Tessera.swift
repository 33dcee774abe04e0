import ArgumentParser
import Checkpoints
import Foundation
import Platform

@main
struct Tessera: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Read, reshard, verify and run NeMo/Megatron reward-model checkpoints.",
        discussion: """
        Every checkpoint form NeMo writes is understood: .nemo tar or unpacked folder; legacy \
        per-rank torch.save files (model_weights.ckpt, mp_rank_XX/, tp_rank_XX_pp_rank_XXX/); \
        Megatron distributed checkpoints (model_weights/, zarr or torch_dist). So is Tessera's \
        compressed HDF5 store, one self-describing file (see Schemas/hdf5-store.md).

        Exit codes: 0 success, 1 a negative verdict, 2 bad input or failure.
        """,
        version: TesseraVersion.string,
        subcommands: [Inspect.self, Convert.self, Verify.self, Forward.self, Tokenize.self, Score.self, Merge.self, Pairwise.self, Demo.self]
    )

    static func main() {
        _ = processStart
        Termination.install()
        ProcessMemory.keepLargeAllocationsInHeap()
        // A file-size limit (RLIMIT_FSIZE) is a failed write naming the file, not a killed process.
        signal(SIGXFSZ, SIG_IGN)
        var status: Int32
        do {
            var command = try parseAsRoot(nil)
            try command.run()
            status = 0
        } catch {
            status = exitStatus(reporting: error)
        }
        // What a command printed before it ended (a verdict before exit 1, a report before a
        // failure) is written out; a failure to write it is a failure of the command.
        do throws(TesseraError) { try OutputSink.standardOutput.flush() } catch {
            if status != 2 { status = exitStatus(reporting: error) }
        }
        Termination.exit(status)
    }

    /// The one exit-code mapping: 0 success (help and version included), 1 a negative verdict
    /// (an `ExitCode(1)` a command throws) and nothing else, 2 every failure: bad input, a
    /// usage error, an unexpected error. Each failure prints one line naming its cause.
    static func exitStatus(reporting error: Error) -> Int32 {
        if var e = error as? TesseraError {
            e.message = oneLine(e.message)
            StandardError.write("tessera: error: \(e)\n")
            return 2
        }
        if let code = error as? ExitCode, code.rawValue == 1 || code.rawValue == 2 { return code.rawValue }
        if exitCode(for: error) == .success {
            // --help, --version: ArgumentParser prints them.
            exit(withError: error)
        }
        let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        let isUsage = exitCode(for: error) == .validationFailure
        StandardError.write("tessera: \(isUsage ? "usage" : "error"): \(message)\(isUsage ? " (see tessera --help)" : "")\n")
        return 2
    }
}


/// A message on one line: a library's multi-line text (a YAML parser's excerpt with its caret
/// line) joined with spaces, the lines holding only a marker left out.
func oneLine(_ message: String) -> String {
    message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && $0 != "^" }.joined(separator: " ")
}

/// When `main` began, for start-up times.
let processStart = Date()
