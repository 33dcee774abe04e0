import Foundation
import Platform

/// A SentencePiece model (`.model`, a `ModelProto`) that encodes text exactly as the
/// sentencepiece library does: BPE and unigram models, user-defined symbols, byte
/// fallback, the identity normaliser with its whitespace rules, precompiled character maps.
///
/// A class, immutable once read: as a large struct built by a typed-throwing initialiser it
/// was miscompiled in debug builds here (copies of it crashed while being destroyed).
public final class SentencePieceModel: @unchecked Sendable {
    public enum PieceType: Int, Sendable { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }
    public enum ModelType: Int, Sendable { case unigram = 1, bpe = 2, word = 3, char = 4 }

    public struct Piece: Sendable {
        public var text: String
        public var score: Float
        public var type: PieceType
    }

    public private(set) var pieces: [Piece] = []
    public private(set) var modelType: ModelType = .unigram
    public private(set) var byteFallback = false
    public private(set) var treatWhitespaceAsSuffix = false
    public private(set) var unkID = 0
    public private(set) var normalizerName = "nmt_nfkc"
    public private(set) var hasCharsMap = false
    /// The precompiled character map: a double-array trie of source strings and the blob of
    /// their replacements (`nmt_nfkc` and friends).
    private var trie: [UInt32] = []
    private var replacements: [UInt8] = []
    public private(set) var addDummyPrefix = true
    public private(set) var removeExtraWhitespaces = true
    public private(set) var escapeWhitespaces = true

    /// Normal, user-defined and unused pieces (the ones merges may produce) by UTF-8 bytes,
    /// with their prefixes marked for the unigram lattice.
    /// (Keys are bytes, not Strings: Swift compares Strings by canonical equivalence, so the
    /// Kelvin sign would find "K".)
    private(set) var normalIDs = ByteTable([])
    /// Control, unknown and byte pieces by UTF-8 bytes.
    private(set) var reservedIDs = ByteTable([])
    /// User-defined symbols by first byte, each list longest first: matched longest-first and never split.
    private(set) var userDefined: [[[UInt8]]] = Array(repeating: [], count: 256)
    /// Whether a user-defined symbol starts with the byte.
    private(set) var startsUserSymbol = [Bool](repeating: false, count: 256)
    private(set) var byteIDs = [Int](repeating: -1, count: 256)
    /// Scores and types by id, apart from the pieces (no String traffic on the hot path).
    private(set) var scores: [Float] = []
    private(set) var types: [PieceType] = []
    /// The id the library gives the bytes of each normal piece (a reserved piece of the same
    /// bytes would win), by normal id.
    private(set) var outputIDs: [Int32] = []
    /// The normal id of each one-byte string, -1 where there is none.
    private(set) var byteNormalIDs = [Int32](repeating: -1, count: 256)
    /// BPE merges never join a `▁` to the character before it (no normal piece holds a `▁`
    /// after another character), so the text is merged word by word, words starting at `▁`s.
    private(set) var bpeSplitsBeforeSpace = false
    /// The same after a `▁` (words ending at `▁`s, as with whitespace as a suffix).
    private(set) var bpeSplitsAfterSpace = false
    /// Unigram scores: the best and worst normal piece's.
    private(set) var maxScore: Float = 0, minScore: Float = 0

    /// Reads a `.model` file's bytes; `file` names it in errors.
    public init(bytes: [UInt8], file: String) throws(TesseraError) {
        var r = ProtoReader(bytes: bytes[...], file: file)
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 2): pieces.append(try Self.piece(try r.message()))
            case (2, 2): try readTrainer(try r.message())
            case (3, 2): try readNormalizer(try r.message())
            default: try r.skip(wire)
            }
        }
        guard !pieces.isEmpty else { throw TesseraError(.corrupt, "not a SentencePiece model (no pieces)", file: file) }
        var normal: [([UInt8], Int)] = [], reserved: [([UInt8], Int)] = []
        var user: [[UInt8]] = []
        for (i, p) in pieces.enumerated() {
            switch p.type {
            case .normal, .userDefined, .unused: normal.append((Array(p.text.utf8), i))
            default: reserved.append((Array(p.text.utf8), i))
            }
            if p.type == .userDefined, let first = p.text.utf8.first {
                user.append(Array(p.text.utf8))
                startsUserSymbol[Int(first)] = true
            }
            if p.type == .unknown { unkID = i }
            if p.type == .byte, p.text.count == 6, p.text.hasPrefix("<0x"), let v = UInt8(p.text.dropFirst(3).prefix(2), radix: 16) {
                byteIDs[Int(v)] = i
            }
        }
        for u in user.sorted(by: { $0.count > $1.count }) { userDefined[Int(u[0])].append(u) }
        normalIDs = ByteTable(normal, prefixes: modelType == .unigram)
        reservedIDs = ByteTable(reserved)
        scores = pieces.map(\.score)
        types = pieces.map(\.type)
        outputIDs = [Int32](repeating: -1, count: pieces.count)
        for (key, i) in normal { outputIDs[i] = Int32(reservedIDs.find(key) ?? i) }
        for b in 0..<256 { byteNormalIDs[b] = Int32(normalIDs.find([UInt8(b)]) ?? -1) }
        if modelType != .unigram {
            bpeSplitsBeforeSpace = !normal.contains { Self.joinsSpace($0.0, after: false) }
            bpeSplitsAfterSpace = !normal.contains { Self.joinsSpace($0.0, after: true) }
        }
        let normalScores = pieces.filter { $0.type == .normal }.map(\.score)
        maxScore = normalScores.max() ?? 0
        minScore = normalScores.min() ?? 0
    }

    /// Whether `piece` holds a `▁` next to another character: before it (or `after` it).
    private static func joinsSpace(_ piece: [UInt8], after: Bool) -> Bool {
        func isSpace(_ k: Int) -> Bool { k >= 0 && k + 3 <= piece.count && piece[k..<(k + 3)].elementsEqual(space) }
        for k in piece.indices where isSpace(k) {
            if after ? (k + 3 < piece.count && !isSpace(k + 3)) : (k > 0 && !isSpace(k - 3)) { return true }
        }
        return false
    }

    /// Reads a `.model` file.
    public convenience init(path: String) throws(TesseraError) {
        let f = try ReadOnlyFile(path: path)
        try self.init(bytes: try f.read(0, f.size), file: path)
    }

    private static func piece(_ bytes: ArraySlice<UInt8>) throws(TesseraError) -> Piece {
        var r = ProtoReader(bytes: bytes, file: "")
        var p = Piece(text: "", score: 0, type: .normal)
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 2): p.text = String(decoding: try r.message(), as: UTF8.self)
            case (2, 5): p.score = Float(bitPattern: try r.fixed32())
            case (3, 0): p.type = PieceType(rawValue: try r.varint()) ?? .normal
            default: try r.skip(wire)
            }
        }
        return p
    }

    private func readTrainer(_ bytes: ArraySlice<UInt8>) throws(TesseraError) {
        var r = ProtoReader(bytes: bytes, file: "")
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (3, 0): modelType = ModelType(rawValue: try r.varint()) ?? .unigram
            case (24, 0): treatWhitespaceAsSuffix = try r.varint() != 0
            case (35, 0): byteFallback = try r.varint() != 0
            default: try r.skip(wire)
            }
        }
    }

    private func readNormalizer(_ bytes: ArraySlice<UInt8>) throws(TesseraError) {
        var r = ProtoReader(bytes: bytes, file: "")
        while let (field, wire) = try r.next() {
            switch (field, wire) {
            case (1, 2): normalizerName = String(decoding: try r.message(), as: UTF8.self)
            case (2, 2):
                let blob = try r.message()
                hasCharsMap = !blob.isEmpty
                if hasCharsMap { try readCharsMap(Array(blob)) }
            case (3, 0): addDummyPrefix = try r.varint() != 0
            case (4, 0): removeExtraWhitespaces = try r.varint() != 0
            case (5, 0): escapeWhitespaces = try r.varint() != 0
            default: try r.skip(wire)
            }
        }
    }

    /// `[u32 trie size][trie units][replacement strings]`, as `Normalizer` decodes it.
    private func readCharsMap(_ blob: [UInt8]) throws(TesseraError) {
        guard blob.count >= 4 else { throw TesseraError(.corrupt, "precompiled character map too short") }
        let size = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
        guard size % 4 == 0, 4 + size <= blob.count else { throw TesseraError(.corrupt, "precompiled character map is damaged") }
        trie = stride(from: 4, to: 4 + size, by: 4).map { i in
            UInt32(blob[i]) | UInt32(blob[i + 1]) << 8 | UInt32(blob[i + 2]) << 16 | UInt32(blob[i + 3]) << 24
        }
        replacements = Array(blob[(4 + size)...])
    }

    /// The longest rule of the character map matching the start of `s` (`n` bytes): its
    /// length and the range of its replacement in `replacements`.
    private func charsMapMatch(_ s: UnsafePointer<UInt8>, _ n: Int) -> (length: Int, replacement: Range<Int>)? {
        guard !trie.isEmpty else { return nil }
        // Darts-clone double array: offset/label/leaf/value packed in each 32-bit unit.
        func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        func label(_ u: UInt32) -> UInt32 { u & ((1 << 31) | 0xFF) }
        func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
        return trie.withUnsafeBufferPointer { trie in
            var node = offset(trie[0])
            var best: (Int, Int)?
            for i in 0..<n {
                let b = s[i]
                node ^= Int(b)
                guard node < trie.count else { break }
                let u = trie[node]
                guard label(u) == UInt32(b) else { break }
                node ^= offset(u)
                if hasLeaf(u), node < trie.count { best = (i + 1, Int(trie[node] & ((1 << 31) - 1))) }
            }
            guard let (length, value) = best, value < replacements.count else { return nil }
            let end = replacements[value...].firstIndex(of: 0) ?? replacements.count
            return (length, value..<end)
        }
    }

    /// Vocabulary size.
    public var count: Int { pieces.count }

    /// The id of a piece, as `PieceToId` finds it (unknown id when absent).
    public func id(of piece: String) -> Int {
        reservedIDs.find(piece.utf8) ?? normalIDs.find(piece.utf8) ?? unkID
    }

    /// Length of the user-defined symbol at the start of `s` (`n` bytes), 0 if none is there.
    @inline(__always)
    func userSymbol(_ s: UnsafePointer<UInt8>, _ n: Int) -> Int {
        guard startsUserSymbol[Int(s[0])] else { return 0 }
        for u in userDefined[Int(s[0])] where u.count <= n && memcmp(u, s, u.count) == 0 { return u.count }
        return 0
    }

    /// Length in bytes of the UTF-8 character starting `s` (`n` > 0 bytes; 1 for an invalid byte).
    @inline(__always)
    static func charLength(_ s: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let b = s[0]
        if b < 0x80 { return 1 }
        let length = b >> 5 == 0b110 ? 2 : (b >> 4 == 0b1110 ? 3 : (b >> 3 == 0b11110 ? 4 : 1))
        guard length <= n else { return 1 }
        for k in 1..<length where s[k] & 0xC0 != 0x80 { return 1 }
        return length
    }

    static let space: [UInt8] = [0xE2, 0x96, 0x81]   // U+2581, ▁

    /// The identity normaliser's output (or the character map's): whitespace rules applied,
    /// user-defined symbols kept whole.
    func normalize(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard let s = input.baseAddress else { return [] }
        let n = input.count
        var i = 0
        if removeExtraWhitespaces {
            // Leading input that normalises to spaces is dropped.
            while i < n {
                if s[i] == 0x20 { i += 1; continue }
                if userSymbol(s + i, n - i) == 0, let m = charsMapMatch(s + i, n - i),
                   replacements[m.replacement].allSatisfy({ $0 == 0x20 }) {
                    i += m.length
                    continue
                }
                break
            }
        }
        if i == n { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(n + n / 2 + 8)
        let escape = escapeWhitespaces, removeExtra = removeExtraWhitespaces, identity = trie.isEmpty
        @inline(__always) func appendSpace() {
            if escape { out.append(0xE2); out.append(0x96); out.append(0x81) } else { out.append(0x20) }
        }
        if !treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }
        var prevSpace = removeExtra
        /// Appends a piece of normalised text: leading spaces dropped after a space, spaces escaped.
        func append(_ p: UnsafePointer<UInt8>, _ count: Int) {
            var k = 0
            if prevSpace { while k < count && p[k] == 0x20 { k += 1 } }
            if k < count {
                for j in k..<count { if p[j] == 0x20 { appendSpace() } else { out.append(p[j]) } }
                prevSpace = p[count - 1] == 0x20
            }
            prevSpace = prevSpace && removeExtra
        }
        while i < n {
            let b = s[i]
            if identity && !startsUserSymbol[Int(b)] && b < 0x80 {
                // The common case: an ASCII character the identity normaliser keeps.
                if b == 0x20 {
                    if !prevSpace { appendSpace(); prevSpace = removeExtra }
                } else {
                    out.append(b)
                    prevSpace = false
                }
                i += 1
                continue
            }
            let u = userSymbol(s + i, n - i)
            if u > 0 {
                append(s + i, u)
                i += u
            } else if let m = charsMapMatch(s + i, n - i) {
                replacements.withUnsafeBufferPointer { r in append(r.baseAddress! + m.replacement.lowerBound, m.replacement.count) }
                i += m.length
            } else {
                let length = Self.charLength(s + i, n - i)
                if length == 1 && b >= 0x80 {
                    // Invalid UTF-8 becomes U+FFFD, as the library does.
                    let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
                    append(replacement, 3)
                } else {
                    append(s + i, length)
                }
                i += length
            }
        }
        if removeExtra {
            let sp = escape ? Self.space : [0x20]
            while out.count >= sp.count, out.suffix(sp.count).elementsEqual(sp) { out.removeLast(sp.count) }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }
        return out
    }

    /// Token ids and pieces of `text` (no BOS/EOS).
    public func encode(_ text: String) -> (ids: [Int], pieces: [String]) {
        let normalized = text.utf8.withContiguousStorageIfAvailable { normalize($0) }
            ?? Array(text.utf8).withUnsafeBufferPointer { normalize($0) }
        var ids: [Int] = []
        ids.reserveCapacity(normalized.count / 2 + 1)
        normalized.withUnsafeBufferPointer { s in
            if modelType == .unigram { unigram(s, into: &ids) } else { bpe(s, into: &ids) }
        }
        return (ids, ids.map { pieces[$0].text })
    }

    /// Appends the ids of a segment of the normalised text (`normalID` its normal id, or -1),
    /// as `SentencePieceProcessor` gives them: reserved pieces first, unknown text as its
    /// bytes with byte fallback, consecutive unknown segments as one unknown id otherwise.
    @inline(__always)
    func appendIDs(_ s: UnsafePointer<UInt8>, _ count: Int, normalID: Int32, into ids: inout [Int]) {
        if normalID >= 0 { ids.append(Int(outputIDs[Int(normalID)])); return }
        if let id = reservedIDs.find(s, count) { ids.append(id); return }
        if byteFallback {
            for k in 0..<count { ids.append(byteIDs[Int(s[k])] >= 0 ? byteIDs[Int(s[k])] : unkID) }
        } else if ids.last != unkID {
            ids.append(unkID)
        }
    }

    /// Unigram: the segmentation with the highest total piece score (Viterbi over the lattice
    /// of every piece matching at every character), as `unigram_model.cc` does: user-defined
    /// symbols score `chars x max score - 0.1`, a character no piece covers is an unknown node
    /// scored `min score - 10`; ties keep the longest piece ending at a position.
    private func unigram(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int]) {
        guard let s = text.baseAddress else { return }
        // Character boundaries (user-defined symbols are not split by the normaliser, but
        // the lattice still walks them character by character).
        var bounds: [Int] = [0]
        var i = 0
        while i < text.count { i += Self.charLength(s + i, text.count - i); bounds.append(i) }
        let n = bounds.count - 1
        if n == 0 { return }
        var best = [Float](repeating: -.infinity, count: n + 1)
        var from = [Int](repeating: -1, count: n + 1)
        /// The normal id of the piece ending each best path, -1 for an unknown node.
        var fromID = [Int32](repeating: -1, count: n + 1)
        best[0] = 0
        for start in 0..<n where best[start] > -.infinity {
            var coveredOne = false
            var oneID: Int32 = -1
            var end = start + 1
            var hash: UInt64 = 0
            var k = bounds[start]
            while end <= n {
                while k < bounds[end] { hash = ByteTable.step(hash, s[k]); k += 1 }
                // No piece starts with the bytes so far: none is longer either.
                guard let slot = normalIDs.slot(hash, s + bounds[start], k - bounds[start]) else { break }
                if slot.id >= 0 {
                    let id = Int(slot.id)
                    if end == start + 1 { oneID = slot.id }
                    if types[id] != .unused {
                        let score = types[id] == .userDefined ? Float(end - start) * maxScore - 0.1 : scores[id]
                        if best[start] + score > best[end] { best[end] = best[start] + score; from[end] = start; fromID[end] = slot.id }
                        if end == start + 1 { coveredOne = true }
                    }
                }
                guard slot.isPrefix else { break }
                end += 1
            }
            if !coveredOne, best[start] + minScore - 10 > best[start + 1] {
                best[start + 1] = best[start] + minScore - 10
                from[start + 1] = start
                // An unused piece of the character still names it.
                fromID[start + 1] = oneID
            }
        }
        var ends: [Int] = []
        var j = n
        while j > 0 { ends.append(j); j = from[j] }
        for e in ends.reversed() {
            let lo = bounds[from[e]]
            appendIDs(s + lo, bounds[e] - lo, normalID: fromID[e], into: &ids)
        }
    }

    /// Text of `ids`, as `DecodeIds` gives it: pieces joined, `▁` as spaces, byte pieces
    /// as their bytes, control pieces dropped, the dummy-prefix space removed.
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && id < pieces.count {
            let p = pieces[id]
            switch p.type {
            case .control: continue
            case .unknown: bytes += Array(" \u{2047} ".utf8)
            case .byte:
                if let v = UInt8(p.text.dropFirst(3).prefix(2), radix: 16) { bytes.append(v) }
            default:
                var piece = Array(p.text.utf8)[...]
                if bytes.isEmpty && addDummyPrefix && !treatWhitespaceAsSuffix && piece.starts(with: Self.space) {
                    piece = piece.dropFirst(Self.space.count)
                }
                var k = piece.startIndex
                while k < piece.endIndex {
                    if piece[k...].starts(with: Self.space) { bytes.append(0x20); k += Self.space.count } else { bytes.append(piece[k]); k += 1 }
                }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A minimal protobuf wire-format reader.
struct ProtoReader {
    var bytes: ArraySlice<UInt8>
    let file: String

    mutating func varint() throws(TesseraError) -> Int {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard let b = bytes.first, shift < 64 else { throw TesseraError(.corrupt, "truncated protobuf", file: file) }
            bytes.removeFirst()
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return Int(truncatingIfNeeded: v) }
            shift += 7
        }
    }

    mutating func fixed32() throws(TesseraError) -> UInt32 {
        guard bytes.count >= 4 else { throw TesseraError(.corrupt, "truncated protobuf", file: file) }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[bytes.startIndex + k]) << (8 * k) }
        bytes.removeFirst(4)
        return v
    }

    mutating func message() throws(TesseraError) -> ArraySlice<UInt8> {
        let n = try varint()
        guard n >= 0, n <= bytes.count else { throw TesseraError(.corrupt, "truncated protobuf", file: file) }
        let m = bytes.prefix(n)
        bytes.removeFirst(n)
        return m
    }

    mutating func next() throws(TesseraError) -> (Int, Int)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        return (key >> 3, key & 7)
    }

    mutating func skip(_ wire: Int) throws(TesseraError) {
        switch wire {
        case 0: _ = try varint()
        case 1: guard bytes.count >= 8 else { throw TesseraError(.corrupt, "truncated protobuf", file: file) }; bytes.removeFirst(8)
        case 2: _ = try message()
        case 5: _ = try fixed32()
        default: throw TesseraError(.corrupt, "unsupported protobuf wire type \(wire)", file: file)
        }
    }
}
