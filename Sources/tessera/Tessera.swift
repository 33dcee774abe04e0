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
        ProcessMemory.keepLargeAllocationsInHeap()
        // A file-size limit (RLIMIT_FSIZE) is a failed write naming the file, not a killed process.
        signal(SIGXFSZ, SIG_IGN)
        main(nil)
    }
}


/// When `main` began, for start-up times.
let processStart = Date()

/// Signal sources kept alive for the life of the process.
nonisolated(unsafe) private var signalSources: [DispatchSourceSignal] = []

/// On SIGINT/SIGTERM, removes partial outputs before exiting, so an interrupted run
/// leaves nothing behind.
func removePartialOutputsOnInterrupt() {
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            PartialOutputs.removeAll()
            FileHandle.standardError.write(Data("\ntessera: interrupted; partial output removed\n".utf8))
            exit(128 + sig)
        }
        source.resume()
        signalSources.append(source)
    }
}

/// Runs `body`, turning a TesseraError into a message on stderr and exit code 2.
func runReportingErrors(_ body: () throws -> Void) throws {
    removePartialOutputsOnInterrupt()
    do {
        try body()
    } catch let e as TesseraError {
        FileHandle.standardError.write(Data("tessera: error: \(e)\n".utf8))
        throw ExitCode(2)
    }
}
