import ArgumentParser
import Checkpoints
import Foundation
import Platform

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Walk through Tessera on the small reward checkpoint that ships in the repository."
    )

    @Option(help: "The checkpoint to use.")
    var checkpoint = "Tests/Fixtures/tiny/nemo/legacy-te-bf16-tp2pp2.nemo"

    func run() throws {
        try runReportingErrors {
            let cache = MappingCache()
            print("== inspect \(checkpoint)")
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            let sums = try TensorStreamer(cache: cache).digests(cat.tensors)
            print(InspectReport(cat, digests: sums).text())
        }
    }
}
