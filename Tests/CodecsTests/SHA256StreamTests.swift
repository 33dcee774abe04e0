import Codecs
import Foundation
import Platform
import TestSupport
import Testing

/// The digests coreutils' `sha256sum` gives for `messages`, in order (one process for all).
private func sha256sum(_ messages: [[UInt8]]) throws -> [String] {
    let folder = try TemporaryFolder("sha")
    let paths = messages.indices.map { folder.file("\($0)") }
    for (m, path) in zipSameCount(messages, paths) { try Data(m).write(to: URL(fileURLWithPath: path)) }
    let p = Process(), out = Pipe()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["sha256sum"] + paths
    p.standardOutput = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return text.split(separator: "\n").map { String($0.prefix(64)) }
}

/// SHA-256 fed one message or two at once in uneven slices (partial blocks, messages of
/// different lengths) gives the digests of an independent implementation, coreutils'.
@Test func sha256StreamsEqualCoreutils() throws {
    var messages: [[UInt8]] = [], digests: [String] = []
    var rng = try TestSeed.generator(fallback: 7)
    func next(_ bound: Int) -> Int { Int(rng.next() >> 33) % bound }
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
        messages += [a, b]
        digests += [sa.finalizeHex(), sb.finalizeHex()]
    }
    let expected = try sha256sum(messages)
    #expect(expected.count == messages.count)
    for (i, (got, want)) in zipSameCount(digests, expected).enumerated() {
        #expect(got == want, "message \(i) of \(messages[i].count) bytes")
    }
    var empty = SHA256Stream()
    #expect(empty.finalizeHex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
}
