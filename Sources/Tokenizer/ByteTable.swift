import Glibc

/// A hash table from byte strings to ids that looks up slices without allocating
/// (open addressing over FNV-1a hashes; keys compared byte for byte).
struct ByteTable: Sendable {
    private var bytes: [UInt8] = []
    /// Key i is bytes[starts[i]..<starts[i + 1]].
    private var starts: [Int] = [0]
    private var values: [Int] = []
    private var slots: [Int32]
    private let mask: Int

    init(_ entries: [([UInt8], Int)]) {
        var size = 16
        while size < entries.count * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
        for (key, value) in entries where find(key) == nil {
            let index = values.count
            bytes += key
            starts.append(bytes.count)
            values.append(value)
            var slot = Self.hash(key) & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index)
        }
    }

    static func hash<C: Collection>(_ key: C) -> Int where C.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of the bytes at `p` (`n` of them), if present: the hot path, no allocation.
    func find(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int? {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<n { h = (h ^ UInt64(p[i])) &* 0x100_0000_01b3 }
        var slot = Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
        return bytes.withUnsafeBufferPointer { kb -> Int? in
            while true {
                let index = Int(slots[slot])
                if index < 0 { return nil }
                let s = starts[index], e = starts[index + 1]
                if e - s == n && memcmp(kb.baseAddress! + s, p, n) == 0 { return values[index] }
                slot = (slot + 1) & mask
            }
        }
    }

    /// The id of `key`, if present.
    func find<C: Collection>(_ key: C) -> Int? where C.Element == UInt8 {
        if let r = key.withContiguousStorageIfAvailable({ b in find(b.baseAddress ?? UnsafePointer(bitPattern: 1)!, b.count) }) {
            return r
        }
        var slot = Self.hash(key) & mask
        let n = key.count
        while true {
            let index = Int(slots[slot])
            if index < 0 { return nil }
            let s = starts[index], e = starts[index + 1]
            if e - s == n && bytes[s..<e].elementsEqual(key) { return values[index] }
            slot = (slot + 1) & mask
        }
    }
}
