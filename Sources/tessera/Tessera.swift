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
        Every checkpoint form NeMo writes is understood: .nemo tar or unpacked folder, legacy
        per-rank torch.save files (model_weights.ckpt, mp_rank_XX/, tp_rank_XX_pp_rank_XXX/) and
        Megatron distributed checkpoints (model_weights/, zarr or torch_dist).

        Exit codes: 0 success, 1 a negative verdict, 2 bad input or failure.
        """,
        subcommands: [Inspect.self, Convert.self, Demo.self]
    )
}

/// Runs `body`, turning a TesseraError into a message on stderr and exit code 2.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as TesseraError {
        FileHandle.standardError.write(Data("tessera: error: \(e)\n".utf8))
        throw ExitCode(2)
    }
}
