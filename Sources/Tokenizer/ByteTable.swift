import Glibc

/// A hash table from byte strings to ids that looks up raw bytes without allocating
/// (open addressing; keys compared byte for byte).
///
/// Hashes are polynomial, `h(s) = Σ (s[i] + 1) · base^(n-1-i)` (mod 2^64), so the hash of a
/// concatenation follows from its parts' (`combine`): BPE looks up a merged pair without
/// reading its bytes again. Optionally every proper prefix (at character boundaries) of a
/// key is marked too, which lets a lattice stop extending a match as soon as no key can
/// start with it (what a trie's common-prefix search does).
///
/// A class, immutable once built; its storage is freed with it.
final class ByteTable: @unchecked Sendable {
    /// A marked key or prefix.
    struct Entry {
        var start: Int32
        var count: Int32
        /// The key's id, -1 for an entry that only marks a prefix.
        var id: Int32
        /// Some longer key starts with this one.
        var isPrefix: Bool
    }

    static let base: UInt64 = 0x100_0000_01b3

    /// Open-addressing slots, 8 bytes each so that the table stays in cache: the top 32 bits
    /// of the hash above the index of the entry (`UInt32.max` for an empty slot).
    private let slots: UnsafeMutableBufferPointer<UInt64>
    private let entries: UnsafeMutableBufferPointer<Entry>
    private let keys: UnsafeMutableBufferPointer<UInt8>
    private let mask: Int
    private static let emptySlot = UInt64(UInt32.max)

    /// Keys with their ids; the first of equal keys wins. With `prefixes`, the proper
    /// prefixes of keys ending at a UTF-8 character boundary are marked as well.
    init(_ keyIDs: [([UInt8], Int)], prefixes: Bool = false) {
        var prefixCount = 0
        if prefixes {
            for (key, _) in keyIDs { prefixCount += key.dropFirst().count { $0 & 0xC0 != 0x80 } }
        }
        var size = 16
        while size < (keyIDs.count + prefixCount) * 2 { size <<= 1 }
        slots = .allocate(capacity: size)
        slots.initialize(repeating: Self.emptySlot)
        mask = size - 1
        entries = .allocate(capacity: max(keyIDs.count + prefixCount, 1))
        keys = .allocate(capacity: max(keyIDs.reduce(0) { $0 + $1.0.count }, 1))
        var used = 0, entryCount = 0
        /// Marks `n` bytes at `p`, copied to `keys` unless they are stored at `start` already.
        func mark(_ p: UnsafePointer<UInt8>, _ n: Int, id: Int32, start: Int32?) {
            let h = Self.hash(p, n)
            let slot = findSlot(h, p, n)
            if let e = index(slot) {
                if id < 0 { entries[e].isPrefix = true }
                return
            }
            var at = start ?? Int32(used)
            if start == nil {
                _ = UnsafeMutableBufferPointer(rebasing: keys[used..<(used + n)]).initialize(from: UnsafeBufferPointer(start: p, count: n))
                used += n
                at = Int32(used - n)
            }
            entries.baseAddress!.advanced(by: entryCount).initialize(to: Entry(start: at, count: Int32(n), id: id, isPrefix: id < 0))
            slots[slot] = (h >> 32) << 32 | UInt64(entryCount)
            entryCount += 1
        }
        for (key, value) in keyIDs {
            key.withUnsafeBufferPointer { k in mark(k.baseAddress ?? UnsafePointer(bitPattern: 1)!, k.count, id: Int32(value), start: nil) }
        }
        guard prefixes else { return }
        for (key, _) in keyIDs {
            key.withUnsafeBufferPointer { k in
                guard k.count > 1, let p = k.baseAddress else { return }
                // A prefix's bytes are those of its key, stored already.
                let start = entries[index(findSlot(Self.hash(p, k.count), p, k.count))!].start
                for n in 1..<k.count where k[n] & 0xC0 != 0x80 { mark(p, n, id: -1, start: start) }
            }
        }
    }

    deinit {
        slots.deallocate()
        entries.deallocate()
        keys.deallocate()
    }

    /// The hash of `n` bytes at `p`.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0
        for i in 0..<n { h = step(h, p[i]) }
        return h
    }

    /// The hash of a key extended by byte `b`.
    @inline(__always)
    static func step(_ h: UInt64, _ b: UInt8) -> UInt64 { h &* base &+ UInt64(b) &+ 1 }

    /// The hash of `a + b` from `a`'s hash and `b`'s hash and `base^count(b)`.
    @inline(__always)
    static func combine(_ a: UInt64, _ b: UInt64, power: UInt64) -> UInt64 { a &* power &+ b }

    /// The slot holding the key (`hash` its hash), or the empty slot where it would go.
    @inline(__always)
    private func findSlot(_ hash: UInt64, _ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var slot = Int(truncatingIfNeeded: (hash &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
        let fingerprint = hash >> 32
        while true {
            let s = slots[slot]
            if s == Self.emptySlot { return slot }
            if s >> 32 == fingerprint {
                let e = entries[Int(truncatingIfNeeded: UInt32(truncatingIfNeeded: s))]
                if Int(e.count) == n && memcmp(keys.baseAddress! + Int(e.start), p, n) == 0 { return slot }
            }
            slot = (slot + 1) & mask
        }
    }

    /// The index of the entry in `slot`, nil for an empty slot.
    @inline(__always)
    private func index(_ slot: Int) -> Int? {
        slots[slot] == Self.emptySlot ? nil : Int(truncatingIfNeeded: UInt32(truncatingIfNeeded: slots[slot]))
    }

    /// The entry of the key or prefix at `p` (`n` bytes, `hash` their hash), if marked: the hot path.
    @inline(__always)
    func entry(_ hash: UInt64, _ p: UnsafePointer<UInt8>, _ n: Int) -> Entry? {
        guard let e = index(findSlot(hash, p, n)) else { return nil }
        return entries[e]
    }

    /// The id of the key at `p` (`n` bytes, `hash` their hash), or -1.
    @inline(__always)
    func find(_ hash: UInt64, _ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        guard let e = index(findSlot(hash, p, n)) else { return -1 }
        return entries[e].id
    }

    /// The id of the key at `p` (`n` bytes), if present.
    func find(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int? {
        let id = find(Self.hash(p, n), p, n)
        return id < 0 ? nil : Int(id)
    }

    /// The id of `key`, if present.
    func find<C: Collection>(_ key: C) -> Int? where C.Element == UInt8 {
        if let r = key.withContiguousStorageIfAvailable({ b in find(b.baseAddress ?? UnsafePointer(bitPattern: 1)!, b.count) }) {
            return r
        }
        return Array(key).withUnsafeBufferPointer { b in find(b.baseAddress ?? UnsafePointer(bitPattern: 1)!, b.count) }
    }
}
