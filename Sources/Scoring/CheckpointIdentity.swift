import Checkpoints
import Codecs
import Foundation
import Platform

/// A cheap fingerprint of a checkpoint, the same for every copy of it wherever it lies: the
/// SHA-256 of its format and layout, its model configuration, every tensor's name, dtype and
/// shape, and the first 4 KiB stored of each tensor's first piece. Shards scored with
/// different checkpoints (another fine-tune, another precision) differ in it; reading it costs
/// a few kilobytes per tensor, not the whole model.
public enum CheckpointIdentity {
    /// Bytes read per tensor.
    static let sample = 4096

    /// `sha256:<hex>` of `catalogue`.
    public static func of(_ catalogue: Catalogue) throws(TesseraError) -> String {
        var digest = SHA256Stream()
        func add(_ s: String) { Array((s + "\n").utf8).withUnsafeBytes { digest.update($0) } }
        add("\(catalogue.format.rawValue) tp=\(catalogue.tp) pp=\(catalogue.pp)")
        if let config = catalogue.config {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            add(String(decoding: (try? encoder.encode(config)) ?? Data(), as: UTF8.self))
        }
        for t in catalogue.tensors.sorted(by: { $0.name < $1.name }) {
            add("\(t.name) \(t.dtype) \(t.shape)")
            guard let slice = t.pieces.first?.storage else { continue }
            let bytes = try read(slice, count: min(sample, slice.count))
            bytes.withUnsafeBytes { digest.update($0) }
        }
        return "sha256:" + digest.finalizeHex()
    }

    /// The first `count` bytes of `slice`.
    static func read(_ slice: FileSlice, count: Int) throws(TesseraError) -> [UInt8] {
        let fd = open(slice.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TesseraError(.io, "cannot open: \(String(cString: strerror(errno)))", file: slice.path) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(slice.offset)) }
        guard n == count else { throw TesseraError(.io, "cannot read \(count) bytes at \(slice.offset)", file: slice.path) }
        return bytes
    }
}
