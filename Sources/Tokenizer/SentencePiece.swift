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

    /// What encoding reads, apart from the pieces: read once per `encode`.
    private var encoder = Encoder()

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
        for (i, p) in pieces.enumerated() where p.type == .unknown { unkID = i }
        encoder = Encoder(self, trie: trie, replacements: replacements)
    }

    /// Reads a `.model` file.
    public convenience init(path: String) throws(TesseraError) {
        try ReadOnlyFile.requireRegularFile(path)
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

    /// Vocabulary size.
    public var count: Int { pieces.count }

    /// The id of a piece, as `PieceToId` finds it (unknown id when absent).
    public func id(of piece: String) -> Int { encoder.id(of: piece) }

    static let space: [UInt8] = [0xE2, 0x96, 0x81]   // U+2581, ▁

    /// Token ids and pieces of `text` (no BOS/EOS).
    public func encode(_ text: String) -> (ids: [Int], pieces: [String]) {
        let encoder = self.encoder
        let ids = encodeIDs(text)
        return (ids, ids.map { encoder.pieceTexts[$0] })
    }

    /// Token ids of `text` (no BOS/EOS): `encode(text).ids` without making the pieces' Strings.
    public func encodeIDs(_ text: String) -> [Int] {
        let encoder = self.encoder
        return text.utf8.withContiguousStorageIfAvailable { encoder.encode($0) }
            ?? Array(text.utf8).withUnsafeBufferPointer { encoder.encode($0) }
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
