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
        .library(name: "Sharding", targets: ["Sharding"]),
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
        // C for the OS layer: the termination-signal pipe, glibc's allocator tuning, syncfs.
        .target(name: "CSystemShims"),
        // C for the codecs: HDF5's byte shuffle (AVX-512 VBMI), SHA-256 (x86 SHA extensions), libzstd's experimental settings.
        .target(name: "CCodecs", dependencies: ["CZstd"]),
        // C for libhdf5 (1.10 to 1.14+ APIs): its macros, the zstd filter, the O_DIRECT file driver, one-time set-up.
        .target(name: "CHDF5Shims", dependencies: ["CHDF5", "CZstd"]),
        // The engine's numeric kernels: one GEMM driver with micro-kernels per x86 class (AVX2, AVX-512, AVX512-BF16) and a portable path, element-wise steps, CPU detection.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // The thin layer over the OS: mapped files, zero pages, typed errors, atomic outputs, termination, dtypes.
        .target(name: "Platform", dependencies: ["CSystemShims", "CISAL"]),
        // Codecs: zstd contexts, HDF5's byte shuffle, SHA-256, CRC-32 (ISA-L and zlib).
        .target(name: "Codecs", dependencies: ["Platform", "CCodecs", "CZstd", "CISAL", "CZlib"]),
        // The one owner of libhdf5: files, datasets, attributes, chunks; every call through one serial executor.
        .target(name: "HDF5", dependencies: ["Platform", "CHDF5Shims", "CHDF5"]),
        // torch.save zip archives and the safe unpickler.
        .target(name: "TorchFormat", dependencies: ["Platform", "Codecs"]),
        // Readers, the catalogue of global tensors, partition rules, model config.
        .target(name: "Checkpoints", dependencies: ["Platform", "Codecs", "HDF5", "TorchFormat", .product(name: "Yams", package: "Yams")]),
        // Target layouts, the conversion plan and the streaming writers.
        .target(name: "Sharding", dependencies: ["Checkpoints", "TorchFormat", "Tokenizer", "Platform", "Codecs", "HDF5"]),
        // The Nemotron forward pass and the reward head, from any catalogue.
        .target(name: "Engine", dependencies: ["Checkpoints", "Platform", "CKernels"]),
        // SentencePiece models read and applied exactly as the sentencepiece library does.
        .target(name: "Tokenizer", dependencies: ["Platform"]),
        // NeMo-Aligner's attribute annotation and pairwise evaluation on one host.
        .target(name: "Scoring", dependencies: ["Engine", "Checkpoints", "Tokenizer", "Platform", "Codecs"]),
        // Proof that two checkpoints hold the same model: weights and outputs.
        .target(name: "Verification", dependencies: ["Checkpoints", "Engine", "Scoring", "Tokenizer", "Platform"]),
        .executableTarget(name: "tessera", dependencies: [
            "Checkpoints", "Sharding", "Engine", "Verification", "Tokenizer", "Scoring", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Helpers shared by the test targets: fixtures, temporary folders, seeded generators, checked comparisons.
        .target(name: "TestSupport"),
        .testTarget(name: "PlatformTests", dependencies: ["Platform", "TestSupport"]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "Platform", "TestSupport"]),
        .testTarget(name: "TorchFormatTests", dependencies: ["TorchFormat", "Platform", "TestSupport"]),
        .testTarget(name: "VerificationTests", dependencies: ["Verification", "Sharding", "Checkpoints", "Engine", "Platform", "TestSupport"]),
        .testTarget(name: "ScoringTests", dependencies: ["Scoring", "Engine", "Tokenizer", "Checkpoints", "Platform", "Codecs", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "Platform", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Checkpoints", "Platform", "CKernels", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["tessera", "Platform", "TestSupport"]),
        .testTarget(name: "ShardingTests", dependencies: ["Sharding", "Checkpoints", "Tokenizer", "Platform", "Codecs", "HDF5", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "TorchFormat", "Platform", "Codecs", "TestSupport"],
                    resources: []),
    ],
    swiftLanguageModes: [.v6]
)
