import Codecs
import Platform
import Testing

/// The FIPS 180-2 examples: empty, one block, two blocks, and a million bytes fed unevenly.
@Test func sha256GivesTheStandardsDigests() {
    func digest(_ text: String) -> String {
        var h = SHA256Stream()
        Array(text.utf8).withUnsafeBytes { h.update($0) }
        return h.finalizeHex()
    }
    #expect(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var million = SHA256Stream()
    let a = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    a.withUnsafeBytes { all in
        var at = 0, step = 1
        while at < all.count {
            let n = min(step, all.count - at)
            million.update(UnsafeRawBufferPointer(rebasing: all[at..<(at + n)]))
            at += n
            step = step * 3 + 1
        }
    }
    #expect(million.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
}

@Test func crc32MatchesTheZipChecksum() {
    var c = CRC32()
    Array("123456789".utf8).withUnsafeBytes { c.update($0) }
    #expect(c.value == 0xCBF4_3926)
    var split = CRC32()
    Array("1234".utf8).withUnsafeBytes { split.update($0) }
    Array("56789".utf8).withUnsafeBytes { split.update($0) }
    #expect(split.value == c.value)
}

/// CRC-32 extended over zeros without reading them equals the checksum of the zeros read.
@Test func crcOfZerosWithoutReadingThem() {
    let lengths = [0, 1, 3, 4095, 4096, 65537, 1 << 20, (3 << 20) + 5]
    #expect(lengths.count == 8)
    for n in lengths {
        var prefix = CRC32()
        [UInt8](arrayLiteral: 1, 2, 3).withUnsafeBytes { prefix.update($0) }
        var read = prefix, skipped = prefix, viewed = prefix
        [UInt8](repeating: 0, count: n).withUnsafeBytes { read.update($0) }
        skipped.appendZeros(n)
        if n > 0 { viewed.update(ZeroPages.run(n)) }
        #expect(skipped.value == read.value, "length \(n)")
        #expect(viewed.value == read.value, "length \(n)")
    }
}
