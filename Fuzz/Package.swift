// swift-tools-version:6.0
// libFuzzer targets, one per parser of untrusted input. Built apart from the main package (so
// its build stays lean) by Fuzz/build.sh with -sanitize=fuzzer,address; see Fuzz/README.md.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name (whatever this clone is called).
let tessera = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let fuzzers = ["FuzzZip", "FuzzUnpickler", "FuzzDCPMetadata", "FuzzDistcpItem", "FuzzZarrMetadata", "FuzzTar",
               "FuzzModelConfig", "FuzzSentencePiece", "FuzzScoringJSONL", "FuzzHDF5Store", "FuzzSafetensors", "FuzzHFConfig"]

let package = Package(
    name: "TesseraFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "FuzzHarness", dependencies: [
            .product(name: "Checkpoints", package: tessera), .product(name: "TorchFormat", package: tessera),
            .product(name: "Tokenizer", package: tessera), .product(name: "Scoring", package: tessera),
            .product(name: "Platform", package: tessera), .product(name: "Sharding", package: tessera),
        ]),
        .target(name: "FuzzDriver"),
    ] + fuzzers.map { .executableTarget(name: $0, dependencies: ["FuzzHarness", "FuzzDriver"]) },
    swiftLanguageModes: [.v6]
)
