import Foundation
import Glibc
import Platform
import TestSupport
import Testing

/// Folder.create makes missing parents, accepts an existing folder, and names the folder and
/// the system's reason (errno kept) when a file stands in the way.
@Test func foldersAreCreatedWithTheirParentsOrRefusedWithTheReason() throws {
    let root = try TemporaryFolder("folders")
    let deep = root.file("a/b/c")
    try Folder.create(deep)
    var isDir: ObjCBool = false
    #expect(FileManager.default.fileExists(atPath: deep, isDirectory: &isDir) && isDir.boolValue)
    try Folder.create(deep) // already there: fine

    #expect(FileManager.default.createFile(atPath: root.file("plain"), contents: Data([1])))
    for blocked in [root.file("plain"), root.file("plain/under")] {
        do {
            try Folder.create(blocked)
            Issue.record("created \(blocked) through a regular file")
        } catch {
            #expect(error.code == .io)
            #expect(error.errorNumber == ENOTDIR || error.errorNumber == EEXIST)
            #expect(error.description.contains("cannot create folder: Not a directory"))
        }
    }
}

/// An output's missing parent folders are made before it is written; a file in their way
/// is refused naming the output and the folder.
@Test func anOutputsParentFoldersAreMadeOrTheOutputIsRefused() throws {
    let root = try TemporaryFolder("destination")
    let made = try AtomicDestination(root.file("new/deeper/out.h5"), force: false)
    var isDir: ObjCBool = false
    #expect(FileManager.default.fileExists(atPath: root.file("new/deeper"), isDirectory: &isDir) && isDir.boolValue)
    made.abandon()

    #expect(FileManager.default.createFile(atPath: root.file("plain"), contents: Data([1])))
    #expect {
        _ = try AtomicDestination(root.file("plain/out.h5"), force: false)
    } throws: { error in
        let e = error as? TesseraError
        return e?.file == root.file("plain/out.h5") && e?.errorNumber == ENOTDIR && e?.message.contains("cannot create its folder") == true
    }
}

/// A FIFO (or any file that is not a regular file) named as a file to read is refused at
/// once, not opened: opening a FIFO with no writer for reading would wait for one.
@Test func aPipeIsRefusedNotWaitedOn() throws {
    let root = try TemporaryFolder("fifo")
    let fifo = root.file("weights.ckpt")
    #expect(mkfifo(fifo, 0o600) == 0)
    #expect {
        try ReadOnlyFile.requireRegularFile(fifo)
    } throws: { error in
        let e = error as? TesseraError
        return e?.code == .unsupported && e?.file == fifo && e?.message.contains("not a regular file") == true
    }
    #expect(throws: TesseraError.self) { try ReadOnlyFile.requireRegularFile("/dev/zero") }
    #expect(throws: TesseraError.self) { try ReadOnlyFile.requireRegularFile(root.file("missing")) }
    #expect(FileManager.default.createFile(atPath: root.file("plain"), contents: Data([1])))
    try ReadOnlyFile.requireRegularFile(root.file("plain"))
}

/// A whole input is read from a regular file or from a pipe to its end; a folder, a missing
/// file and an unreadable one are refused naming the file and the reason.
@Test func wholeInputsAreReadFromFilesAndPipes() throws {
    let root = try TemporaryFolder("whole")
    let bytes = (0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    let path = root.file("input.jsonl")
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    let fromFile = try WholeFile.read(path)
    #expect(fromFile.count == bytes.count)
    #expect(fromFile == bytes)

    let fifo = root.file("pipe")
    #expect(mkfifo(fifo, 0o600) == 0)
    let writer = Thread {
        let fd = open(fifo, O_WRONLY)
        bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count { let n = write(fd, b.baseAddress! + done, min(65536, b.count - done)); if n <= 0 { break }; done += n }
        }
        close(fd)
    }
    writer.start()
    let fromPipe = try WholeFile.read(fifo)
    #expect(fromPipe.count == bytes.count)
    #expect(fromPipe == bytes)

    #expect { _ = try WholeFile.read(root.path) } throws: { ($0 as? TesseraError)?.errorNumber == EISDIR }
    #expect { _ = try WholeFile.read(root.file("missing")) } throws: { ($0 as? TesseraError)?.code == .missing }
}

/// --force replaces a file or a folder, never a device or a pipe (`/dev/stdout` would have been
/// removed and a file renamed into its place).
@Test func forceReplacesOnlyFilesAndFolders() throws {
    let root = try TemporaryFolder("force")
    let fifo = root.file("pipe")
    #expect(mkfifo(fifo, 0o600) == 0)
    for path in [fifo, "/dev/null"] {
        #expect {
            _ = try AtomicDestination(path, force: true)
        } throws: { error in
            (error as? TesseraError)?.message.contains("will not replace something that is not a file or folder") == true
        }
    }
    #expect(FileManager.default.fileExists(atPath: "/dev/null") && FileManager.default.fileExists(atPath: fifo))
    #expect(FileManager.default.createFile(atPath: root.file("old"), contents: Data([1])))
    let replacing = try AtomicDestination(root.file("old"), force: true)
    replacing.abandon()
}
