import Glibc

/// Folders the writers create.
public enum Folder {
    /// Creates `path` and any missing parents, as `mkdir -p` does; an existing folder is
    /// accepted. A failure names the folder that could not be made and the system's reason
    /// ("cannot create folder: Permission denied", with `errno` kept as data).
    public static func create(_ path: String) throws(TesseraError) {
        if mkdir(path, 0o777) == 0 { return }
        var number = errno
        if number == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try create(String(path[..<slash]))
            if mkdir(path, 0o777) == 0 { return }
            number = errno
        }
        if number == EEXIST {
            var info = stat()
            guard stat(path, &info) == 0 else { throw .system("cannot create folder", file: path, errorNumber: errno) }
            if info.st_mode & S_IFMT == S_IFDIR { return }
            number = ENOTDIR
        }
        throw .system("cannot create folder", file: path, errorNumber: number)
    }

    /// Creates the folder `path` is to be written in (and its parents); a failure names
    /// `path`, the folder and the system's reason.
    public static func createParent(of path: String) throws(TesseraError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let parent = String(path[..<slash])
        do { try create(parent) } catch {
            throw .system("cannot create its folder \(error.file ?? parent)", file: path, errorNumber: error.errorNumber ?? EIO)
        }
    }
}
