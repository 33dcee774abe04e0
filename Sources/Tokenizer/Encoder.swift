import Glibc

/// What encoding reads of a `SentencePieceModel`: the normaliser's settings and the lookup
/// tables, in a struct so that one copy per `encode` serves every lookup (a class's
/// properties are checked for exclusive access on each read).
struct Encoder: Sendable {
    var modelType: SentencePieceModel.ModelType = .unigram
    var byteFallback = false, treatWhitespaceAsSuffix = false, addDummyPrefix = true
    var removeExtraWhitespaces = true, escapeWhitespaces = true
    var unkID = 0
    /// The precompiled character map: a double-array trie of source strings and the blob of
    /// their replacements (`nmt_nfkc` and friends); empty for the identity normaliser.
    var trie: [UInt32] = []
    var replacements: [UInt8] = []
    /// Normal, user-defined and unused pieces (the ones merges may produce) by UTF-8 bytes,
    /// with their prefixes marked for the unigram lattice.
    /// (Keys are bytes, not Strings: Swift compares Strings by canonical equivalence, so the
    /// Kelvin sign would find "K".)
    var normalIDs = ByteTable([])
    /// Control, unknown and byte pieces by UTF-8 bytes.
    var reservedIDs = ByteTable([])
    /// User-defined symbols by first byte, each list longest first: matched longest-first and never split.
    var userDefined: [[[UInt8]]] = Array(repeating: [], count: 256)
    /// Whether a user-defined symbol starts with the byte.
    var startsUserSymbol = [Bool](repeating: false, count: 256)
    var byteIDs = [Int](repeating: -1, count: 256)
    /// Scores, types and texts by id, apart from the pieces.
    var scores: [Float] = []
    var types: [SentencePieceModel.PieceType] = []
    var pieceTexts: [String] = []
    /// The id the library gives the bytes of each normal piece (a reserved piece of the same
    /// bytes would win), by normal id.
    var outputIDs: [Int32] = []
    /// The normal id of each one-byte string, -1 where there is none.
    var byteNormalIDs = [Int32](repeating: -1, count: 256)
    /// BPE merges never join a `▁` to the character before it (no normal piece holds a `▁`
    /// after another character), so the text is merged word by word, words starting at `▁`s.
    var bpeSplitsBeforeSpace = false
    /// The same after a `▁` (words ending at `▁`s, as with whitespace as a suffix).
    var bpeSplitsAfterSpace = false
    /// Unigram scores: the best and worst normal piece's.
    var maxScore: Float = 0, minScore: Float = 0

    /// An encoder that knows no pieces.
    init() {}

    init(_ model: SentencePieceModel, trie: [UInt32], replacements: [UInt8]) {
        modelType = model.modelType
        byteFallback = model.byteFallback
        treatWhitespaceAsSuffix = model.treatWhitespaceAsSuffix
        addDummyPrefix = model.addDummyPrefix
        removeExtraWhitespaces = model.removeExtraWhitespaces
        escapeWhitespaces = model.escapeWhitespaces
        unkID = model.unkID
        self.trie = trie
        self.replacements = replacements
        let pieces = model.pieces
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
            if p.type == .byte, p.text.count == 6, p.text.hasPrefix("<0x"), let v = UInt8(p.text.dropFirst(3).prefix(2), radix: 16) {
                byteIDs[Int(v)] = i
            }
        }
        for u in user.sorted(by: { $0.count > $1.count }) { userDefined[Int(u[0])].append(u) }
        normalIDs = ByteTable(normal, prefixes: modelType == .unigram)
        reservedIDs = ByteTable(reserved)
        scores = pieces.map(\.score)
        types = pieces.map(\.type)
        pieceTexts = pieces.map(\.text)
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
        let space = SentencePieceModel.space
        func isSpace(_ k: Int) -> Bool { k >= 0 && k + 3 <= piece.count && piece[k..<(k + 3)].elementsEqual(space) }
        for k in piece.indices where isSpace(k) {
            if after ? (k + 3 < piece.count && !isSpace(k + 3)) : (k > 0 && !isSpace(k - 3)) { return true }
        }
        return false
    }

    /// The id of a piece, as `PieceToId` finds it (unknown id when absent).
    func id(of piece: String) -> Int {
        reservedIDs.find(piece.utf8) ?? normalIDs.find(piece.utf8) ?? unkID
    }

    /// Token ids of the UTF-8 text `text` (no BOS/EOS).
    func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int] {
        let normalized = normalize(text)
        var ids: [Int] = []
        ids.reserveCapacity(normalized.count / 2 + 1)
        normalized.withUnsafeBufferPointer { s in
            if modelType == .unigram { unigram(s, into: &ids) } else { bpe(s, into: &ids) }
        }
        return ids
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

    /// Length of the user-defined symbol at the start of `s` (`n` > 0 bytes), 0 if none is there.
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
        var out = NormalizedText(escape: escapeWhitespaces, removeExtra: removeExtraWhitespaces, capacity: n + n / 2 + 8)
        let identity = trie.isEmpty
        if !treatWhitespaceAsSuffix && addDummyPrefix { out.appendSpace() }
        startsUserSymbol.withUnsafeBufferPointer { startsUserSymbol in
            while i < n {
                let b = s[i]
                if identity && !startsUserSymbol[Int(b)] {
                    // The common case: a character the identity normaliser keeps.
                    if b == 0x20 {
                        if !out.prevSpace { out.appendSpace(); out.prevSpace = out.removeExtra }
                        i += 1
                        continue
                    }
                    let length = Self.charLength(s + i, n - i)
                    if b < 0x80 || length > 1 {
                        for k in i..<(i + length) { out.bytes.append(s[k]) }
                        out.prevSpace = false
                        i += length
                        continue
                    }
                }
                let u = userSymbol(s + i, n - i)
                if u > 0 {
                    out.append(s + i, u)
                    i += u
                } else if let m = charsMapMatch(s + i, n - i) {
                    replacements.withUnsafeBufferPointer { r in out.append(r.baseAddress! + m.replacement.lowerBound, m.replacement.count) }
                    i += m.length
                } else {
                    let length = Self.charLength(s + i, n - i)
                    if length == 1 && b >= 0x80 {
                        // Invalid UTF-8 becomes U+FFFD, as the library does.
                        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
                        out.append(replacement, 3)
                    } else {
                        out.append(s + i, length)
                    }
                    i += length
                }
            }
        }
        if removeExtraWhitespaces {
            let sp = escapeWhitespaces ? SentencePieceModel.space : [0x20]
            while out.bytes.count >= sp.count, out.bytes.suffix(sp.count).elementsEqual(sp) { out.bytes.removeLast(sp.count) }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { out.appendSpace() }
        return out.bytes
    }

    /// The normaliser's output as it is written.
    struct NormalizedText {
        var bytes: [UInt8] = []
        let escape: Bool, removeExtra: Bool
        /// The text so far ends with a space (so leading spaces of what follows are dropped).
        var prevSpace: Bool

        init(escape: Bool, removeExtra: Bool, capacity: Int) {
            self.escape = escape
            self.removeExtra = removeExtra
            prevSpace = removeExtra
            bytes.reserveCapacity(capacity)
        }

        @inline(__always) mutating func appendSpace() {
            if escape { bytes.append(0xE2); bytes.append(0x96); bytes.append(0x81) } else { bytes.append(0x20) }
        }

        /// Appends a piece of normalised text: leading spaces dropped after a space, spaces escaped.
        mutating func append(_ p: UnsafePointer<UInt8>, _ count: Int) {
            var k = 0
            if prevSpace { while k < count && p[k] == 0x20 { k += 1 } }
            if k < count {
                for j in k..<count { if p[j] == 0x20 { appendSpace() } else { bytes.append(p[j]) } }
                prevSpace = p[count - 1] == 0x20
            }
            prevSpace = prevSpace && removeExtra
        }
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
        // Positions are walked while reachable (not while their score is above -inf: a damaged
        // model's NaN or huge scores must not leave a position without a path).
        for start in 0..<n where start == 0 || from[start] >= 0 {
            var coveredOne = false
            var oneID: Int32 = -1
            var end = start + 1
            var hash: UInt64 = 0
            var k = bounds[start]
            while end <= n {
                while k < bounds[end] { hash = ByteTable.step(hash, s[k]); k += 1 }
                // No piece starts with the bytes so far: none is longer either.
                guard let entry = normalIDs.entry(hash, s + bounds[start], k - bounds[start]) else { break }
                if entry.id >= 0 {
                    let id = Int(entry.id)
                    if end == start + 1 { oneID = entry.id }
                    if types[id] != .unused {
                        let score = types[id] == .userDefined ? Float(end - start) * maxScore - 0.1 : scores[id]
                        if best[start] + score > best[end] { best[end] = best[start] + score; from[end] = start; fromID[end] = entry.id }
                        if end == start + 1 { coveredOne = true }
                    }
                }
                guard entry.isPrefix else { break }
                end += 1
            }
            if (!coveredOne && best[start] + minScore - 10 > best[start + 1]) || from[start + 1] < 0 {
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
}
