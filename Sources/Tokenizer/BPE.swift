extension Encoder {
    /// BPE: repeatedly merge the adjacent pair whose concatenation is a piece with the
    /// highest score (leftmost on ties), as `bpe_model.cc` does; user-defined symbols are
    /// never merged. Appends the ids of the normalised text `text`.
    func bpe(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int]) {
        guard let s = text.baseAddress else { return }
        let work = BPEWork(capacity: text.count)
        defer { work.free() }
        let symbols = work.symbols
        let count = bpeSymbols(s, text.count, into: symbols)
        if count == 0 { return }
        scores.withUnsafeBufferPointer { scores in
            var agenda = work.agenda
            // Words (runs of symbols between the boundaries no piece spans) are merged one at
            // a time: the same merges as over the whole text, with far smaller agendas.
            var first = 0
            while first < count {
                let end = bpeWordEnd(s, symbols, first: first, count: count)
                bpeMerge(s, symbols, word: first..<end, agenda: &agenda, scores: scores)
                var k = Int32(first)
                while k >= 0 {
                    let sym = symbols[Int(k)]
                    appendIDs(s + Int(sym.start), Int(sym.end - sym.start), normalID: sym.id, into: &ids)
                    k = sym.next
                }
                first = end
            }
        }
    }

    /// Writes the initial symbols of the `n` bytes at `s`, linked in a row: user-defined symbols
    /// whole (frozen), otherwise one character each. Returns how many there are.
    @inline(__always) private func bpeSymbols(_ s: UnsafePointer<UInt8>, _ n: Int, into symbols: UnsafeMutablePointer<BPEWork.Symbol>) -> Int {
        let table = normalIDs
        var count = 0
        byteNormalIDs.withUnsafeBufferPointer { byteNormalIDs in
            var i = 0
            while i < n {
                var length = userSymbol(s + i, n - i)
                let frozen = length > 0
                if !frozen { length = Self.charLength(s + i, n - i) }
                var sym = BPEWork.Symbol(start: Int32(i), end: Int32(i + length), prev: Int32(count - 1), next: Int32(count + 1),
                                         id: -1, frozen: frozen, hash: 0, power: 1)
                if length == 1 {
                    sym.hash = ByteTable.step(0, s[i])
                    sym.power = ByteTable.base
                    sym.id = byteNormalIDs[Int(s[i])]
                } else {
                    for k in i..<(i + length) { sym.hash = ByteTable.step(sym.hash, s[k]); sym.power &*= ByteTable.base }
                    sym.id = table.find(sym.hash, s + i, length)
                }
                symbols[count] = sym
                count += 1
                i += length
            }
        }
        return count
    }

    /// Where the word starting at symbol `first` ends: at the first boundary between an
    /// unfrozen `▁` and other symbols that no piece spans (the whole text when pieces span both).
    @inline(__always) private func bpeWordEnd(_ s: UnsafePointer<UInt8>, _ symbols: UnsafeMutablePointer<BPEWork.Symbol>,
                                              first: Int, count: Int) -> Int {
        let split = (before: bpeSplitsBeforeSpace, after: bpeSplitsAfterSpace)
        guard split.before || split.after else { return count }
        /// Whether symbol `k` is an unfrozen `▁`.
        @inline(__always) func isSpace(_ k: Int) -> Bool {
            let sym = symbols[k]
            return !sym.frozen && sym.end - sym.start == 3 && s[Int(sym.start)] == 0xE2 && s[Int(sym.start) + 1] == 0x96
                && s[Int(sym.start) + 2] == 0x81
        }
        var end = first + 1
        var prevSpace = isSpace(first)
        while end < count {
            let space = isSpace(end)
            if space != prevSpace && (space ? split.before : split.after) { break }
            prevSpace = space
            end += 1
        }
        return end
    }

    /// Merges the symbols of `word` (unlinked from their neighbours outside it) best pair
    /// first, through `agenda`, until no adjacent pair forms a piece.
    @inline(__always) private func bpeMerge(_ s: UnsafePointer<UInt8>, _ symbols: UnsafeMutablePointer<BPEWork.Symbol>, word: Range<Int>,
                                            agenda: inout BPEWork.Agenda, scores: UnsafeBufferPointer<Float>) {
        let table = normalIDs
        /// Queues the pair of symbols `l` and `r` if their concatenation is a piece.
        @inline(__always) func maybeAdd(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let left = symbols[Int(l)], right = symbols[Int(r)]
            guard !left.frozen, !right.frozen else { return }
            let size = Int(right.end - left.start)
            let id = table.find(ByteTable.combine(left.hash, right.hash, power: right.power), s + Int(left.start), size)
            if id >= 0 { agenda.push(BPEWork.Pair(score: scores[Int(id)], left: l, right: r, size: Int32(size), id: id)) }
        }
        symbols[word.lowerBound].prev = -1
        symbols[word.upperBound - 1].next = -1
        for k in (word.lowerBound + 1)..<word.upperBound { maybeAdd(Int32(k - 1), Int32(k)) }
        while let top = agenda.pop() {
            let l = Int(top.left), r = Int(top.right)
            // Skip pairs whose symbols have changed since they were queued.
            guard symbols[l].start < symbols[l].end, symbols[r].start < symbols[r].end,
                  symbols[r].end - symbols[l].start == top.size else { continue }
            let right = symbols[r]
            symbols[l].end = right.end
            symbols[l].next = right.next
            symbols[l].id = top.id
            symbols[l].hash = ByteTable.combine(symbols[l].hash, right.hash, power: right.power)
            symbols[l].power &*= right.power
            if right.next >= 0 { symbols[Int(right.next)].prev = Int32(l) }
            symbols[r].end = right.start
            maybeAdd(symbols[l].prev, Int32(l))
            maybeAdd(Int32(l), symbols[l].next)
        }
    }
}

/// The working memory of one BPE encoding: the symbols (spans of the text, linked to their
/// neighbours) and the agenda of adjacent pairs that form a piece.
struct BPEWork {
    struct Symbol {
        var start: Int32, end: Int32, prev: Int32, next: Int32
        /// The normal id of the symbol's bytes, -1 if they are not a piece.
        var id: Int32
        var frozen: Bool
        /// `ByteTable` hash of the bytes and `base^(end - start)`.
        var hash: UInt64, power: UInt64
    }

    struct Pair {
        var score: Float, left: Int32, right: Int32, size: Int32, id: Int32
        /// Max-heap order: higher score first, then the leftmost.
        @inline(__always) func before(_ o: Pair) -> Bool { score != o.score ? score > o.score : left < o.left }
    }

    /// A binary max-heap of pairs in fixed storage (a text of n symbols queues fewer than 3n pairs:
    /// n - 1 at first, two per merge).
    struct Agenda {
        let heap: UnsafeMutablePointer<Pair>
        var count = 0

        @inline(__always) mutating func push(_ p: Pair) {
            var c = count
            count += 1
            while c > 0 {
                let parent = (c - 1) / 2
                guard p.before(heap[parent]) else { break }
                heap[c] = heap[parent]
                c = parent
            }
            heap[c] = p
        }

        @inline(__always) mutating func pop() -> Pair? {
            guard count > 0 else { return nil }
            let top = heap[0]
            count -= 1
            guard count > 0 else { return top }
            let last = heap[count]
            var c = 0
            while true {
                let l = 2 * c + 1
                if l >= count { break }
                var m = l
                if l + 1 < count && heap[l + 1].before(heap[l]) { m = l + 1 }
                guard heap[m].before(last) else { break }
                heap[c] = heap[m]
                c = m
            }
            heap[c] = last
            return top
        }
    }

    let symbols: UnsafeMutablePointer<Symbol>
    let agenda: Agenda

    /// Room for a text of `capacity` bytes.
    init(capacity: Int) {
        symbols = .allocate(capacity: max(capacity, 1))
        agenda = Agenda(heap: .allocate(capacity: max(3 * capacity, 1)))
    }

    func free() {
        symbols.deallocate()
        agenda.heap.deallocate()
    }
}
