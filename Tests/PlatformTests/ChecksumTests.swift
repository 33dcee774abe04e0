import Platform
import Testing

@Test func emptyInputHasTheKnownDigest() {
    let h = SHA256Hasher()
    #expect(h.finalizeHex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
}

@Test func incrementalUpdatesEqualOneUpdate() {
    let text = Array("abc".utf8)
    var a = SHA256Hasher()
    text.withUnsafeBytes { a.update($0) }
    var b = SHA256Hasher()
    for byte in text { [byte].withUnsafeBytes { b.update($0) } }
    let da = a.finalizeHex(), db = b.finalizeHex()
    #expect(da == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(da == db)
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
