import Checkpoints
import CKernels
import Platform

/// The parts of a model config the engine runs, checked once: unknown spellings are refused
/// here, never quietly run as something else.
struct Architecture: Sendable {
    /// The MLP activation (NeMo's spellings).
    enum Activation: String, Sendable, CaseIterable {
        case gelu, geglu, fastGeglu = "fast-geglu", relu, squaredRelu = "squared-relu", swiglu, fastSwiglu = "fast-swiglu"

        /// The kernel's activation (a gated unit applies it to the gate half).
        var kernel: Int32 {
            switch self {
            case .squaredRelu: Int32(TESSERA_SQUARED_RELU)
            case .relu: Int32(TESSERA_RELU)
            case .gelu, .geglu, .fastGeglu: Int32(TESSERA_GELU)
            case .swiglu, .fastSwiglu: Int32(TESSERA_SILU)
            }
        }

        /// True when fc1 holds a gate and an up projection.
        var gated: Bool { rawValue.hasSuffix("glu") }
    }

    /// The layer norm (compared lower-cased, as NeMo does).
    enum Normalization: String, Sendable, CaseIterable {
        case layernorm, layernorm1p, rmsnorm

        /// True for RMSNorm (no mean subtracted).
        var rms: Bool { self == .rmsnorm }
    }

    /// How positions enter the model.
    enum PositionEmbedding: String, Sendable, CaseIterable {
        /// A learned table added to the token embeddings (`embedding.position_embeddings`).
        case learnedAbsolute = "learned_absolute"
        /// Rotary embeddings on (part of) each query and key head.
        case rope
    }

    let activation: Activation
    let normalization: Normalization
    let positionEmbedding: PositionEmbedding

    /// The architecture of `config`; a spelling the engine does not run is refused, naming the key.
    init(_ config: ModelConfig, file: String?) throws(TesseraError) {
        guard config.unrunSettings.isEmpty else {
            throw TesseraError(.unsupported, "the engine does not run a model with \(config.unrunSettings.joined(separator: ", ")) "
                + "(its arithmetic differs from the GPT it runs); convert and verify --weights-only read it", file: file)
        }
        activation = try Self.parse(config.activation, key: "activation", file: file)
        normalization = try Self.parse(config.normalization.lowercased(), key: "normalization", file: file)
        positionEmbedding = try Self.parse(config.positionEmbeddingType, key: "position_embedding_type", file: file)
    }

    private static func parse<E: RawRepresentable & CaseIterable>(_ value: String, key: String, file: String?) throws(TesseraError) -> E
    where E.RawValue == String {
        guard let e = E(rawValue: value) else {
            let known = E.allCases.map(\.rawValue).sorted().joined(separator: ", ")
            throw TesseraError(.unsupported, "the engine does not run \(key) '\(value)' (it runs: \(known))", file: file)
        }
        return e
    }
}
