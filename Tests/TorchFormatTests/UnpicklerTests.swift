import Platform
import Testing
@testable import TorchFormat

private func unpickle(_ bytes: [UInt8]) throws(TesseraError) -> PickleValue {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    return try Unpickler.load(UnsafeRawBufferPointer(buffer))
}

private func global(_ module: String, _ name: String) -> [UInt8] {
    [0x63] + Array("\(module)\n\(name)\n".utf8)
}

@Test func refusesGlobalsOutsideTheAllowList() {
    // GLOBAL 'posix system', then a call: must fail at the GLOBAL, naming it.
    let evil = [0x80, 0x02] + global("posix", "system") + [0x58, 2, 0, 0, 0] + Array("ls".utf8) + [0x85, 0x52, 0x2E]
    do {
        _ = try unpickle(evil)
        Issue.record("expected a forbidden-global error")
    } catch {
        #expect(error.code == .forbiddenGlobal)
        #expect(error.message.contains("posix.system"))
    }
}

@Test func buildsOrderedDictsWithMetadataAttributes() throws {
    // OrderedDict() ; SETITEMS {'a': 1, 'b': 'x'} ; BUILD {'_metadata': {}}
    var p: [UInt8] = [0x80, 0x02] + global("collections", "OrderedDict") + [0x29, 0x52, 0x71, 0]
    p += [0x28, 0x58, 1, 0, 0, 0, 0x61, 0x4B, 1, 0x58, 1, 0, 0, 0, 0x62, 0x58, 1, 0, 0, 0, 0x78, 0x75]
    p += [0x7D, 0x58, 9, 0, 0, 0] + Array("_metadata".utf8) + [0x7D, 0x73, 0x62, 0x2E]
    let v = try unpickle(p)
    let d = try #require(v.dict)
    #expect(d.ordered)
    #expect(d["a"]?.int == 1)
    #expect(d["b"]?.string == "x")
    #expect(d.attributes.first?.key.string == "_metadata")
}

@Test func protocolTwoBytesComeFromCodecsEncode() throws {
    // _codecs.encode('\u{ff}A', 'latin1') -> bytes [255, 65]
    var p: [UInt8] = [0x80, 0x02] + global("_codecs", "encode")
    p += [0x58, 3, 0, 0, 0, 0xC3, 0xBF, 0x41, 0x58, 6, 0, 0, 0] + Array("latin1".utf8) + [0x86, 0x52, 0x2E]
    guard case .bytes(let b) = try unpickle(p) else { Issue.record("not bytes"); return }
    #expect(b == [255, 65])
}

@Test func memoSharesMutableContainers() throws {
    // EMPTY_LIST, BINPUT 0, APPEND 7, then a tuple of (memo[0], memo[0]): both see the append.
    let p: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0, 0x4B, 7, 0x61, 0x68, 0, 0x86, 0x2E]
    let v = try unpickle(p)
    let parts = try #require(v.elements)
    #expect(parts.count == 2)
    #expect(parts[0].ints == [7])
    #expect(parts[1].ints == [7])
}

@Test func truncatedPicklesAreCorrupt() {
    #expect(throws: TesseraError.self) { _ = try unpickle([0x80, 0x02, 0x58, 10, 0, 0, 0, 0x41]) }
}

@Test func unusedOpcodesAreRefused() {
    // INST (protocol 0 class instantiation) is never emitted by checkpoints.
    do {
        _ = try unpickle([0x69] + Array("os\nsystem\n".utf8) + [0x2E])
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .corrupt)
    }
}

@Test func largeLongsDecodeAsTwosComplement() throws {
    #expect(try unpickle([0x80, 0x02, 0x8A, 2, 0xFF, 0x7F, 0x2E]).int == 32767)
    #expect(try unpickle([0x80, 0x02, 0x8A, 1, 0xFF, 0x2E]).int == -1)
}

/// Tensor sizes are untrusted: a shape whose element count overflows is refused as corrupt
/// (it used to trap computing the count).
@Test(arguments: [[1 << 40, 1 << 40], [Int.max, 2], [3, -1]])
func overflowingTensorShapesAreRefused(_ shape: [Int]) throws {
    // _rebuild_tensor_v2(persistent storage, 0, shape, strides 1..., False), ints as LONG1.
    func long1(_ v: Int) -> [UInt8] { [0x8A, 8] + (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    func tuple(_ vs: [Int]) -> [UInt8] { [0x28] + vs.flatMap(long1) + [0x74] }
    let bytes: [UInt8] = [0x80, 0x02] + global("torch._utils", "_rebuild_tensor_v2") + [0x28, 0x4E, 0x51] + long1(0)
        + tuple(shape) + tuple(shape.map { _ in 1 }) + [0x89, 0x74, 0x52, 0x2E]
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    let storage = StorageRecord(key: "0", dtype: .float32, elementCount: 4, bytes: FileSlice(path: "x", offset: 0, count: 16))
    do {
        _ = try Unpickler.load(UnsafeRawBufferPointer(buffer)) { _ throws(TesseraError) in .storage(storage) }
        Issue.record("shape \(shape) was accepted")
    } catch {
        #expect(error.message.contains("overflows") || error.message.contains("negative"), "\(error)")
    }
}

/// A container put into itself, directly or through another, is refused: the reference cycle
/// a damaged pickle could make would never be freed (FuzzUnpickler's leak findings). Shared,
/// acyclic references stay accepted.
@Test func referenceCyclesAreRefused() throws {
    let cycles: [(String, [UInt8])] = [
        // EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP
        ("list in itself", [0x80, 0x02, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]),
        // EMPTY_DICT, BINPUT 0, SHORT_BINUNICODE "k", BINGET 0, SETITEM, STOP
        ("dict in itself", [0x80, 0x02, 0x7D, 0x71, 0, 0x8C, 1, 0x6B, 0x68, 0, 0x73, 0x2E]),
        // EMPTY_LIST, BINPUT 0, EMPTY_LIST, BINPUT 1, BINGET 0, APPEND (inner holds outer), then
        // BINGET 0 ... outer.append(inner): [outer, inner] on the stack -> APPEND into outer
        ("list through another", [0x80, 0x02, 0x5D, 0x71, 0, 0x5D, 0x71, 1, 0x68, 0, 0x61, 0x30, 0x68, 0, 0x68, 1, 0x61, 0x2E]),
    ]
    #expect(cycles.count == 3)
    for (name, bytes) in cycles {
        do {
            _ = try unpickle(bytes)
            Issue.record("\(name): a reference cycle was accepted")
        } catch {
            #expect(error.message.contains("reference cycle"), "\(name): \(error.message)")
        }
    }
    // The same list twice in another list is a shared reference, not a cycle.
    // EMPTY_LIST, BINPUT 0, EMPTY_LIST, BINGET 0, APPEND, BINGET 0, APPEND, STOP
    let shared = try unpickle([0x80, 0x02, 0x5D, 0x71, 0, 0x5D, 0x68, 0, 0x61, 0x68, 0, 0x61, 0x2E])
    guard case .list(let outer) = shared else { Issue.record("expected a list"); return }
    #expect(outer.items.count == 2)
}
