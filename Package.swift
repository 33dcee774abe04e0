// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Tessera",
    products: [
        .executable(name: "tessera", targets: ["tessera"]),
        .library(name: "Checkpoints", targets: ["Checkpoints"]),
        // For the fuzz targets in Fuzz/ (a package of its own).
        .library(name: "Platform", targets: ["Platform"]),
        .library(name: "TorchFormat", targets: ["TorchFormat"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
        .library(name: "Scoring", targets: ["Scoring"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries: module maps only.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // C macros Swift cannot import (HDF5 property classes, mmap flags).
        .target(name: "CShims", dependencies: ["CHDF5", "CZstd"]),
        // The engine's numeric kernels: one GEMM driver with micro-kernels per x86 class (AVX2, AVX-512, AVX512-BF16) and a portable path, element-wise steps, CPU detection.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // The thin layer over C: mapped files, digests, typed errors, atomic outputs.
        .target(name: "Platform", dependencies: ["CISAL", "CZlib", "CZstd", "CHDF5", "CShims"]),
        // torch.save zip archives and the safe unpickler.
        .target(name: "TorchFormat", dependencies: ["Platform"]),
        // Readers, the catalogue of global tensors, partition rules, model config.
        .target(name: "Checkpoints", dependencies: ["Platform", "TorchFormat", "CHDF5", .product(name: "Yams", package: "Yams")]),
        // Target layouts, the conversion plan and the streaming writers.
        .target(name: "Sharding", dependencies: ["Checkpoints", "TorchFormat", "Tokenizer", "Platform"]),
        // The Nemotron forward pass and the reward head, from any catalogue.
        .target(name: "Engine", dependencies: ["Checkpoints", "Platform", "CKernels"]),
        // SentencePiece models read and applied exactly as the sentencepiece library does.
        .target(name: "Tokenizer", dependencies: ["Platform"]),
        // NeMo-Aligner's attribute annotation and pairwise evaluation on one host.
        .target(name: "Scoring", dependencies: ["Engine", "Checkpoints", "Tokenizer", "Platform"]),
        // Proof that two checkpoints hold the same model: weights and outputs.
        .target(name: "Verification", dependencies: ["Checkpoints", "Engine", "Scoring", "Tokenizer", "Platform"]),
        .executableTarget(name: "tessera", dependencies: [
            "Checkpoints", "Sharding", "Engine", "Verification", "Tokenizer", "Scoring", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Helpers shared by the test targets: fixtures, temporary folders, seeded generators, checked comparisons.
        .target(name: "TestSupport"),
        .testTarget(name: "PlatformTests", dependencies: ["Platform", "TestSupport"]),
        .testTarget(name: "TorchFormatTests", dependencies: ["TorchFormat", "Platform", "TestSupport"]),
        .testTarget(name: "VerificationTests", dependencies: ["Verification", "Sharding", "Checkpoints", "Engine", "Platform", "TestSupport"]),
        .testTarget(name: "ScoringTests", dependencies: ["Scoring", "Engine", "Tokenizer", "Checkpoints", "Platform", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "Platform", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Checkpoints", "Platform", "CKernels", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["tessera", "Platform", "TestSupport"]),
        .testTarget(name: "ShardingTests", dependencies: ["Sharding", "Checkpoints", "Tokenizer", "Platform", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "TorchFormat", "Platform", "TestSupport"],
                    resources: []),
    ],
    swiftLanguageModes: [.v6]
)
