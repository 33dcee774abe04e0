import Platform
import Testing

/// Tessera's own SHA-256, fed one message or two at once in uneven slices (partial blocks,
/// messages of different lengths), gives libcrypto's digests.
@Test func sha256StreamsEqualLibcrypto() {
    var rng: UInt64 = 7
    func next(_ bound: Int) -> Int {
        rng = rng &* 6364136223846793005 &+ 1442695040888963407
        return Int(rng >> 33) % bound
    }
    for round in 0..<200 {
        let a = (0..<next(20_000)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ round) }
        let b = (0..<next(20_000)).map { UInt8(truncatingIfNeeded: $0 &* 17 ^ round) }
        var sa = SHA256Stream(), sb = SHA256Stream()
        var i = 0, j = 0
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                while i < a.count || j < b.count {
                    let x = min(a.count - i, next(3000)), y = min(b.count - j, next(3000))
                    if next(4) == 0 {
                        sa.update(UnsafeRawBufferPointer(rebasing: pa[i..<(i + x)]))
                    } else {
                        SHA256Stream.update(&sa, UnsafeRawBufferPointer(rebasing: pa[i..<(i + x)]),
                                            &sb, UnsafeRawBufferPointer(rebasing: pb[j..<(j + y)]))
                        j += y
                    }
                    i += x
                }
            }
        }
        var ha = SHA256Hasher(), hb = SHA256Hasher()
        a.withUnsafeBytes { ha.update($0) }
        b.withUnsafeBytes { hb.update($0) }
        let ea = ha.finalizeHex(), eb = hb.finalizeHex()
        #expect(sa.finalizeHex() == ea, "message of \(a.count) bytes")
        #expect(sb.finalizeHex() == eb, "message of \(b.count) bytes")
    }
    var empty = SHA256Stream()
    #expect(empty.finalizeHex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
}
