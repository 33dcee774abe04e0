import Checkpoints
import Platform

extension Model {
    /// Bounds resident memory to `limit` bytes for one forward pass over `batch`: the batch is
    /// refused before any work when one layer's weights and the batch's activations need more;
    /// otherwise each layer's weights are dropped once used. `name` calls the bound in messages
    /// (e.g. `--max-memory 8G`).
    public func boundMemory(_ limit: Int, named name: String, batch: [[Int]]) throws(TesseraError) {
        let tokens = batch.reduce(0) { $0 + $1.count }, longest = batch.map(\.count).max() ?? 0
        let need = largestLayerBytes + activationBytes(tokens: tokens, longest: longest)
        guard need <= limit else {
            throw TesseraError(.invalidArgument, "the batch needs about \(formatBytes(need)) (one layer's weights and the "
                               + "activations of \(batch.count) sequences), more than \(name); "
                               + "run fewer or shorter sequences at a time")
        }
        releaseWeights = true
    }

    /// Bounds the resident weights to `limit` bytes (runs whose activations are small next to
    /// them, as scoring's): refused when one layer's weights alone take more; otherwise each
    /// layer's weights are dropped once used. `name` calls the bound in messages.
    public func boundWeightMemory(_ limit: Int, named name: String) throws(TesseraError) {
        guard largestLayerBytes <= limit else {
            throw TesseraError(.invalidArgument, "one layer's weights take \(formatBytes(largestLayerBytes)), more than \(name)")
        }
        releaseWeights = true
    }
}
