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
    struct Slot {
        var hash: UInt64
        var start: Int32
        var count: Int32
        /// The key's id, -1 for a slot that only marks a prefix, -2 for an empty slot.
        var id: Int32
        /// Some longer key starts with this one.
        var isPrefix: Bool
    }

    static let base: UInt64 = 0x100_0000_01b3
    static let empty: Int32 = -2

    private let slots: UnsafeMutableBufferPointer<Slot>
    private let keys: UnsafeMutableBufferPointer<UInt8>
    private let mask: Int

    /// Keys with their ids; the first of equal keys wins. With `prefixes`, the proper
    /// prefixes of keys ending at a UTF-8 character boundary are marked as well.
    init(_ entries: [([UInt8], Int)], prefixes: Bool = false) {
        var prefixCount = 0
        if prefixes {
            for (key, _) in entries { prefixCount += key.dropFirst().count { $0 & 0xC0 != 0x80 } }
        }
        var size = 16
        while size < (entries.count + prefixCount) * 2 { size <<= 1 }
        slots = .allocate(capacity: size)
        slots.initialize(repeating: Slot(hash: 0, start: 0, count: 0, id: Self.empty, isPrefix: false))
        mask = size - 1
        let total = entries.reduce(0) { $0 + $1.0.count }
        keys = .allocate(capacity: max(total, 1))
        var used = 0
        for (key, value) in entries {
            key.withUnsafeBufferPointer { k in
                let slot = findSlot(Self.hash(k.baseAddress!, k.count), k.baseAddress!, k.count)
                guard slots[slot].id == Self.empty else { return }
                _ = UnsafeMutableBufferPointer(rebasing: keys[used..<(used + k.count)]).initialize(from: k)
                slots[slot] = Slot(hash: Self.hash(k.baseAddress!, k.count), start: Int32(used), count: Int32(k.count),
                                   id: Int32(value), isPrefix: false)
                used += k.count
            }
        }
        guard prefixes else { return }
        for (key, _) in entries {
            key.withUnsafeBufferPointer { k in
                for n in 1..<max(k.count, 1) where k[n] & 0xC0 != 0x80 {
                    let h = Self.hash(k.baseAddress!, n)
                    let slot = findSlot(h, k.baseAddress!, n)
                    if slots[slot].id == Self.empty {
                        // The prefix's bytes are those of the key it came from, stored already.
                        let whole = slots[findSlot(Self.hash(k.baseAddress!, k.count), k.baseAddress!, k.count)]
                        slots[slot] = Slot(hash: h, start: whole.start, count: Int32(n), id: -1, isPrefix: true)
                    } else {
                        slots[slot].isPrefix = true
                    }
                }
            }
        }
    }

    deinit {
        slots.deallocate()
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
        while true {
            let s = slots[slot]
            if s.id == Self.empty { return slot }
            if s.hash == hash && Int(s.count) == n && memcmp(keys.baseAddress! + Int(s.start), p, n) == 0 { return slot }
            slot = (slot + 1) & mask
        }
    }

    /// The slot of the key or prefix at `p` (`n` bytes, `hash` their hash), if marked: the hot path.
    @inline(__always)
    func slot(_ hash: UInt64, _ p: UnsafePointer<UInt8>, _ n: Int) -> Slot? {
        let s = slots[findSlot(hash, p, n)]
        return s.id == Self.empty ? nil : s
    }

    /// The id of the key at `p` (`n` bytes, `hash` their hash), or -1.
    @inline(__always)
    func find(_ hash: UInt64, _ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        let id = slots[findSlot(hash, p, n)].id
        return id < 0 ? -1 : id
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
