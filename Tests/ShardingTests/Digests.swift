import Checkpoints
import Platform
import TestSupport
import Testing

/// The SHA-256 of every tensor of `c`, by name.
func digests(_ c: Catalogue, cache: MappingCache) throws -> [String: String] {
    let sums = try TensorStreamer(cache: cache).digests(c.tensors)
    return Dictionary(uniqueKeysWithValues: zipSameCount(c.tensors.map(\.name), sums, "tensors and digests"))
}
