import Checkpoints
import Foundation
import Platform
import TestSupport

/// A small Nemotron-shaped model made on the fly: one raw file of random bf16 values and
/// a TP1/PP1 catalogue over it, with a model_config.yaml beside it.
struct SyntheticModel {
    var layers = 4, hidden = 32, heads = 4, groups = 2, ffn = 64, vocab = 96, divisor = 16
    var gated = false
    var seed: UInt64 = 1

    /// Head size (kv_channels): hidden / heads unless given.
    var kvChannels: Int?
    var kv: Int { kvChannels ?? hidden / heads }

    /// A model with rows long enough for the vector shuffle and several chunks per band.
    static var wide: SyntheticModel {
        var model = SyntheticModel()
        model.hidden = 256
        model.heads = 8
        model.groups = 4
        model.ffn = 512
        return model
    }

    var shapes: [(String, [Int])] {
        var s: [(String, [Int])] = [("embedding.word_embeddings.weight", [vocab, hidden])]
        for l in 0..<layers {
            let p = "decoder.layers.\(l)."
            s += [(p + "self_attention.linear_qkv.layer_norm_weight", [hidden]),
                  (p + "self_attention.linear_qkv.layer_norm_bias", [hidden]),
                  (p + "self_attention.linear_qkv.weight", [(heads + 2 * groups) * kv, hidden]),
                  (p + "self_attention.linear_proj.weight", [hidden, heads * kv]),
                  (p + "mlp.linear_fc1.layer_norm_weight", [hidden]),
                  (p + "mlp.linear_fc1.layer_norm_bias", [hidden]),
                  (p + "mlp.linear_fc1.weight", [(gated ? 2 : 1) * ffn, hidden]),
                  (p + "mlp.linear_fc2.weight", [hidden, ffn])]
        }
        s += [("decoder.final_layernorm.weight", [hidden]), ("decoder.final_layernorm.bias", [hidden]),
              ("output_layer.weight", [vocab, hidden]), ("rm_head.weight", [9, hidden]), ("rm_head.bias", [9])]
        return s
    }

    var configYAML: String {
        """
        num_layers: \(layers)
        hidden_size: \(hidden)
        ffn_hidden_size: \(ffn)
        num_attention_heads: \(heads)
        num_query_groups: \(groups)
        kv_channels: \(kv)
        make_vocab_size_divisible_by: \(divisor)
        activation: \(gated ? "fast-swiglu" : "squared-relu")
        normalization: layernorm1p
        bias: false
        share_embeddings_and_output_weights: false
        tensor_model_parallel_size: 1
        pipeline_model_parallel_size: 1
        regression:
          num_attributes: 9

        """
    }

    /// Writes the model into the folder `source` of `folder` and returns that folder and its catalogue.
    func make(in folder: TemporaryFolder) throws -> (dir: String, catalogue: Catalogue) {
        let dir = folder.file("source")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try configYAML.write(toFile: dir + "/model_config.yaml", atomically: true, encoding: .utf8)
        var rng = SplitMix(seed: seed)
        var bytes: [UInt8] = []
        var tensors: [GlobalTensor] = []
        let raw = dir + "/weights.raw"
        for (name, shape) in shapes {
            let n = shape.reduce(1, *)
            let start = bytes.count
            for _ in 0..<n {
                let f = Float(Int32(truncatingIfNeeded: rng.next() >> 33)) / Float(Int32.max)
                let b = UInt16(truncatingIfNeeded: f.bitPattern >> 16)
                bytes += [UInt8(b & 0xFF), UInt8(b >> 8)]
            }
            var strides = [Int](repeating: 1, count: shape.count)
            for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
            let piece = Piece(storage: FileSlice(path: raw, offset: start, count: n * 2), dtype: .bfloat16, storageOffset: 0,
                              strides: strides, shape: shape, globalOffset: [Int](repeating: 0, count: shape.count), origin: name)
            tensors.append(GlobalTensor(name: name, dtype: .bfloat16, shape: shape, pieces: [piece]))
        }
        try Data(bytes).write(to: URL(fileURLWithPath: raw))
        var config = try ModelConfig(yaml: configYAML, file: "synthetic")
        config.paddedVocabSize = vocab
        let cat = Catalogue(format: .nemoLegacy, tp: 1, pp: 1, config: config, tensors: tensors, objects: [],
                            spelling: .transformerEngine, container: DirectoryContainer(root: dir), weightsPath: "")
        return (dir, cat)
    }
}
