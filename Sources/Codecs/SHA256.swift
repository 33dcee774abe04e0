import CCodecs

/// Incremental SHA-256, Tessera's one implementation (the CPU's SHA extensions when present,
/// portable C otherwise). It can feed two messages at once: their rounds interleave on one
/// core, at about 1.4x the throughput of one message.
public struct SHA256Stream {
    private var state = tessera_sha256()

    public init() { tessera_sha256_init(&state) }

    /// Feeds `bytes` into the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        tessera_sha256_update(&state, base, bytes.count)
    }

    /// Feeds `a` into `first` and `b` into `second` together (two different messages).
    public static func update(_ first: inout SHA256Stream, _ a: UnsafeRawBufferPointer,
                              _ second: inout SHA256Stream, _ b: UnsafeRawBufferPointer) {
        guard let pa = a.baseAddress, let pb = b.baseAddress, a.count > 0, b.count > 0 else {
            first.update(a)
            second.update(b)
            return
        }
        tessera_sha256_update2(&first.state, pa, a.count, &second.state, pb, b.count)
    }

    /// The digest's 32 bytes.
    public mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        tessera_sha256_final(&state, &out)
        return out
    }

    /// The digest as lowercase hex.
    public mutating func finalizeHex() -> String { hex(finalize()) }
}

/// Lowercase hex of `bytes`.
public func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var chars: [UInt8] = []
    for b in bytes {
        chars.append(digits[Int(b >> 4)])
        chars.append(digits[Int(b & 15)])
    }
    return String(decoding: chars, as: UTF8.self)
}

/// A digest being fed bytes as they become ready: `pending` holds the bytes not hashed yet.
public protocol PendingDigest: AnyObject {
    var sha: SHA256Stream { get set }
    var pending: UnsafeRawBufferPointer { get set }
}

extension SHA256Stream {
    /// Hashes what the digests of `slots` have pending: when two have bytes, the length they
    /// share goes through both lanes at once; otherwise each hashes all it has.
    public static func hashPending<D: PendingDigest>(_ slots: [D?]) {
        let ready = slots.compactMap { $0 }.filter { !$0.pending.isEmpty }
        if ready.count == 2 {
            let (a, b) = (ready[0], ready[1])
            let n = min(a.pending.count, b.pending.count)
            update(&a.sha, UnsafeRawBufferPointer(rebasing: a.pending[0..<n]), &b.sha, UnsafeRawBufferPointer(rebasing: b.pending[0..<n]))
            a.pending = UnsafeRawBufferPointer(rebasing: a.pending[n...])
            b.pending = UnsafeRawBufferPointer(rebasing: b.pending[n...])
        } else {
            for slot in ready {
                slot.sha.update(slot.pending)
                slot.pending = UnsafeRawBufferPointer(start: nil, count: 0)
            }
        }
    }
}
