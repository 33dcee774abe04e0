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

    /// Normal, user-defined and unused pieces (the ones merges may produce) by UTF-8 bytes.
    /// (Keys are bytes, not Strings: Swift compares Strings by canonical equivalence, so the
    /// Kelvin sign would find "K".)
    private var normalIDs = ByteTable([])
    /// Control, unknown and byte pieces by UTF-8 bytes.
    private var reservedIDs = ByteTable([])
    /// User-defined symbols, matched longest-first and never split.
    private var userDefined: [[UInt8]] = []
    private var byteIDs = [Int](repeating: -1, count: 256)
    /// Scores and types by id, apart from the pieces (no String traffic on the hot path).
    private var scores: [Float] = []
    private var types: [PieceType] = []

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
        for (i, p) in pieces.enumerated() {
            switch p.type {
            case .normal, .userDefined, .unused: normal.append((Array(p.text.utf8), i))
            default: reserved.append((Array(p.text.utf8), i))
            }
            if p.type == .userDefined { userDefined.append(Array(p.text.utf8)) }
            if p.type == .unknown { unkID = i }
            if p.type == .byte, p.text.count == 6, p.text.hasPrefix("<0x"), let v = UInt8(p.text.dropFirst(3).prefix(2), radix: 16) {
                byteIDs[Int(v)] = i
            }
        }
        userDefined.sort { $0.count > $1.count }
        normalIDs = ByteTable(normal)
        reservedIDs = ByteTable(reserved)
        scores = pieces.map(\.score)
        types = pieces.map(\.type)
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

    /// The longest rule of the character map matching the start of `s`: its length and replacement.
    private func charsMapMatch(_ s: ArraySlice<UInt8>) -> (Int, ArraySlice<UInt8>)? {
        guard !trie.isEmpty else { return nil }
        // Darts-clone double array: offset/label/leaf/value packed in each 32-bit unit.
        func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        func label(_ u: UInt32) -> UInt32 { u & ((1 << 31) | 0xFF) }
        func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
        var node = offset(trie[0])
        var best: (Int, Int)?
        for (i, b) in s.enumerated() {
            node ^= Int(b)
            guard node < trie.count else { break }
            let u = trie[node]
            guard label(u) == UInt32(b) else { break }
            node ^= offset(u)
            if hasLeaf(u), node < trie.count { best = (i + 1, Int(trie[node] & ((1 << 31) - 1))) }
        }
        guard let (length, value) = best, value < replacements.count else { return nil }
        let end = replacements[value...].firstIndex(of: 0) ?? replacements.count
        return (length, replacements[value..<end])
    }

    /// Vocabulary size.
    public var count: Int { pieces.count }

    /// The id of a piece, as `PieceToId` finds it (unknown id when absent).
    public func id(of piece: String) -> Int { id(bytes: Array(piece.utf8)) }

    func id<C: Collection>(bytes: C) -> Int where C.Element == UInt8 {
        reservedIDs.find(bytes) ?? normalIDs.find(bytes) ?? unkID
    }

    /// Length of the user-defined symbol at the start of `s`, if one is there.
    private func userSymbol(at s: ArraySlice<UInt8>) -> Int? {
        for u in userDefined where s.count >= u.count && s.prefix(u.count).elementsEqual(u) { return u.count }
        return nil
    }

    /// Length in bytes of the UTF-8 character starting `s` (1 for an invalid byte).
    private static func charLength(_ s: ArraySlice<UInt8>) -> Int {
        guard let b = s.first else { return 0 }
        let n = b < 0x80 ? 1 : (b >> 5 == 0b110 ? 2 : (b >> 4 == 0b1110 ? 3 : (b >> 3 == 0b11110 ? 4 : 1)))
        guard n <= s.count else { return 1 }
        for k in 1..<n where s[s.startIndex + k] & 0xC0 != 0x80 { return 1 }
        return n
    }

    static let space: [UInt8] = [0xE2, 0x96, 0x81]   // U+2581, ▁

    /// The identity normaliser's output: whitespace rules applied, user-defined symbols kept whole.
    func normalize(_ text: String) -> [UInt8] {
        var input = Array(text.utf8)[...]
        if input.isEmpty { return [] }
        // Invalid UTF-8 becomes U+FFFD, as the library does.
        var out: [UInt8] = []
        if removeExtraWhitespaces {
            // Leading input that normalises to spaces is dropped.
            while !input.isEmpty {
                if input.first == 0x20 { input.removeFirst(); continue }
                if userSymbol(at: input) == nil, let (n, r) = charsMapMatch(input), r.allSatisfy({ $0 == 0x20 }) {
                    input.removeFirst(n)
                    continue
                }
                break
            }
        }
        if input.isEmpty { return [] }
        if !treatWhitespaceAsSuffix && addDummyPrefix { out += escapeWhitespaces ? Self.space : [0x20] }
        var prevSpace = removeExtraWhitespaces
        while !input.isEmpty {
            var n: Int
            var piece: ArraySlice<UInt8>
            if let u = userSymbol(at: input) {
                n = u
                piece = input.prefix(u)
            } else if let (length, replacement) = charsMapMatch(input) {
                n = length
                piece = replacement
            } else {
                n = Self.charLength(input)
                piece = input.prefix(n)
                if n == 1 && piece.first! >= 0x80 { piece = [0xEF, 0xBF, 0xBD][...] }
            }
            var sp = piece
            if prevSpace { while sp.first == 0x20 { sp.removeFirst() } }
            if !sp.isEmpty {
                for b in sp { if escapeWhitespaces && b == 0x20 { out += Self.space } else { out.append(b) } }
                prevSpace = sp.last == 0x20
            }
            input.removeFirst(n)
            prevSpace = prevSpace && removeExtraWhitespaces
        }
        if removeExtraWhitespaces {
            let sp = escapeWhitespaces ? Self.space : [0x20]
            while out.count >= sp.count, out.suffix(sp.count).elementsEqual(sp) { out.removeLast(sp.count) }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { out += escapeWhitespaces ? Self.space : [0x20] }
        return out
    }

    /// Token ids and pieces of `text` (no BOS/EOS).
    public func encode(_ text: String) -> (ids: [Int], pieces: [String]) {
        let normalized = normalize(text)
        // Initial symbols: user-defined symbols whole (frozen), otherwise one character each.
        var symbols: [(range: Range<Int>, frozen: Bool)] = []
        var i = 0
        while i < normalized.count {
            let rest = normalized[i...]
            if let u = userSymbol(at: rest) { symbols.append((i..<(i + u), true)); i += u; continue }
            let n = Self.charLength(rest)
            symbols.append((i..<(i + n), false))
            i += n
        }
        let segments = modelType == .unigram ? unigram(normalized, symbols) : bpe(normalized, symbols)
        var ids: [Int] = [], out: [String] = []
        for seg in segments {
            let piece = normalized[seg]
            let id = self.id(bytes: piece)
            if id == unkID && byteFallback && reservedIDs.find(piece) != unkID {
                for b in normalized[seg] {
                    ids.append(byteIDs[Int(b)] >= 0 ? byteIDs[Int(b)] : unkID)
                    out.append(pieces[ids.last!].text)
                }
            } else if id == unkID, ids.last == unkID, reservedIDs.find(piece) != unkID {
                // Consecutive unknown pieces merge into one, as SentencePieceProcessor does.
                continue
            } else {
                ids.append(id)
                out.append(pieces[id].text)
            }
        }
        return (ids, out)
    }

    /// BPE: repeatedly merge the adjacent pair whose concatenation is a piece with the
    /// highest score (leftmost on ties), as `bpe_model.cc` does.
    private func bpe(_ s: [UInt8], _ initial: [(range: Range<Int>, frozen: Bool)]) -> [Range<Int>] {
        if initial.isEmpty { return [] }
        // Read once: class properties read inside the loop would be copied (and retained) per call.
        let table = normalIDs, scores = self.scores
        return s.withUnsafeBufferPointer { text in
            var state = BPEState(text: text.baseAddress!, initial: initial)
            for k in 1..<initial.count { state.maybeAdd(k - 1, k, table, scores) }
            while let top = state.pop() {
                let l = top.left, r = top.right
                guard state.lo[l] < state.hi[l], state.lo[r] < state.hi[r], state.next[l] == r,
                      state.hi[r] - state.lo[l] == top.size else { continue }
                state.hi[l] = state.hi[r]
                state.next[l] = state.next[r]
                if state.next[r] >= 0 { state.prev[state.next[r]] = l }
                state.hi[r] = state.lo[r]
                state.maybeAdd(state.prev[l], l, table, scores)
                state.maybeAdd(l, state.next[l], table, scores)
            }
            return (0..<initial.count).compactMap { state.lo[$0] < state.hi[$0] ? state.lo[$0]..<state.hi[$0] : nil }
        }
    }

    /// Unigram: the segmentation with the highest total piece score (Viterbi over the lattice
    /// of every piece matching at every character), as `unigram_model.cc` does: user-defined
    /// symbols score `chars x max score - 0.1`, a character no piece covers is an unknown node
    /// scored `min score - 10`; ties keep the longest piece ending at a position.
    private func unigram(_ s: [UInt8], _ initial: [(range: Range<Int>, frozen: Bool)]) -> [Range<Int>] {
        // Character boundaries (user-defined symbols are not split by the normaliser, but
        // the lattice still walks them character by character).
        var bounds: [Int] = [0]
        var i = 0
        while i < s.count { i += Self.charLength(s[i...]); bounds.append(i) }
        let n = bounds.count - 1
        if n == 0 { return [] }
        let normalScores = pieces.filter { $0.type == .normal }.map(\.score)
        let maxScore = normalScores.max() ?? 0, minScore = normalScores.min() ?? 0
        let maxBytes = pieces.map { $0.text.utf8.count }.max() ?? 1
        var best = [Float](repeating: -.infinity, count: n + 1)
        var from = [Int](repeating: -1, count: n + 1)
        best[0] = 0
        for start in 0..<n where best[start] > -.infinity {
            var coveredOne = false
            var end = start + 1
            while end <= n && bounds[end] - bounds[start] <= maxBytes {
                if let id = normalIDs.find(s[bounds[start]..<bounds[end]]), types[id] != .unused {
                    let score = types[id] == .userDefined ? Float(end - start) * maxScore - 0.1 : scores[id]
                    if best[start] + score > best[end] { best[end] = best[start] + score; from[end] = start }
                    if end == start + 1 { coveredOne = true }
                }
                end += 1
            }
            if !coveredOne, best[start] + minScore - 10 > best[start + 1] {
                best[start + 1] = best[start] + minScore - 10
                from[start + 1] = start
            }
        }
        var out: [Range<Int>] = []
        var j = n
        while j > 0 { let k = from[j]; out.append(bounds[k]..<bounds[j]); j = k }
        return out.reversed()
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

/// The working state of one BPE encoding: symbol spans, links and the agenda of pairs.
struct BPEState {
    struct Pair {
        var score: Float, left: Int, right: Int, size: Int
        /// Max-heap order: higher score first, then the leftmost.
        @inline(__always) func before(_ o: Pair) -> Bool { score != o.score ? score > o.score : left < o.left }
    }
    let text: UnsafePointer<UInt8>
    var lo: [Int], hi: [Int], prev: [Int], next: [Int]
    let frozen: [Bool]
    var heap: [Pair] = []

    init(text: UnsafePointer<UInt8>, initial: [(range: Range<Int>, frozen: Bool)]) {
        self.text = text
        lo = initial.map(\.range.lowerBound)
        hi = initial.map(\.range.upperBound)
        prev = Array(-1..<(initial.count - 1))
        next = (1...initial.count).map { $0 < initial.count ? $0 : -1 }
        frozen = initial.map(\.frozen)
        heap.reserveCapacity(initial.count * 2)
    }

    mutating func maybeAdd(_ l: Int, _ r: Int, _ table: ByteTable, _ scores: [Float]) {
        guard l >= 0, r >= 0, !frozen[l], !frozen[r] else { return }
        guard let id = table.find(text + lo[l], hi[r] - lo[l]) else { return }
        push(Pair(score: scores[id], left: l, right: r, size: hi[r] - lo[l]))
    }

    mutating func push(_ p: Pair) {
        heap.append(p)
        var c = heap.count - 1
        while c > 0 {
            let parent = (c - 1) / 2
            guard heap[c].before(heap[parent]) else { break }
            heap.swapAt(parent, c)
            c = parent
        }
    }

    mutating func pop() -> Pair? {
        guard let last = heap.popLast() else { return nil }
        guard !heap.isEmpty else { return last }
        let top = heap[0]
        heap[0] = last
        var c = 0
        let n = heap.count
        while true {
            let l = 2 * c + 1, r = l + 1
            var m = c
            if l < n && heap[l].before(heap[m]) { m = l }
            if r < n && heap[r].before(heap[m]) { m = r }
            if m == c { break }
            heap.swapAt(m, c)
            c = m
        }
        return top
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
