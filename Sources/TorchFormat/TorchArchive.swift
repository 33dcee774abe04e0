import Platform

/// A `torch.save` zip archive read in place: the unpickled object, with every
/// tensor pointing at its bytes in the file.
public struct TorchArchive: Sendable {
    /// The record-name prefix (`model_weights/`, `archive/`, ...), taken from the first entry.
    public let prefix: String
    /// The unpickled top-level object.
    public let root: PickleValue
    /// The archive's records.
    public let zip: ZipArchive

    /// Reads the archive that occupies `slice`.
    public init(_ slice: FileSlice, cache: MappingCache) throws(TesseraError) {
        let zip = try ZipArchive(slice)
        guard let first = zip.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw TesseraError(.corrupt, "zip archive has no torch records (expected '<name>/data.pkl')", file: slice.path)
        }
        let prefix = String(first.name[...slash])
        guard let pkl = zip.entry(prefix + "data.pkl") else {
            throw TesseraError(.corrupt, "torch archive has no '\(prefix)data.pkl' record", file: slice.path)
        }
        guard pkl.method == 0 else {
            throw TesseraError(.unsupported, "record '\(pkl.name)' is compressed (method \(pkl.method)); torch.save writes STORED records", file: slice.path)
        }
        let pickle = try ReadOnlyFile(path: slice.path).read(pkl.data.offset, pkl.data.count)
        let root: PickleValue
        do {
            root = try withBytes(pickle) { (bytes) throws(TesseraError) -> PickleValue in
                try Unpickler.load(bytes) { (pid: PickleValue) throws(TesseraError) -> PickleValue in
                    try Self.storage(pid, zip: zip, prefix: prefix)
                }
            }
        } catch {
            throw error.inFile(slice.path)
        }
        self.prefix = prefix
        self.root = root
        self.zip = zip
    }

    private static func storage(_ pid: PickleValue, zip: ZipArchive, prefix: String) throws(TesseraError) -> PickleValue {
        guard let t = pid.elements, t.count >= 5, t[0].string == "storage",
              case .global(_, let cls) = t[1], let dtype = DType(storageClass: cls),
              let key = t[2].string, let numel = t[4].int else {
            throw TesseraError(.corrupt, "persistent id is not ('storage', type, key, location, numel)")
        }
        let name = prefix + "data/" + key
        guard let entry = zip.entry(name) else {
            throw TesseraError(.corrupt, "storage record '\(name)' is missing from the archive")
        }
        guard entry.method == 0 else {
            throw TesseraError(.unsupported, "storage record '\(name)' is compressed (method \(entry.method))")
        }
        let need = numel * dtype.size
        guard entry.data.count >= need else {
            throw TesseraError(.outOfBounds,
                "storage record '\(name)' holds \(entry.data.count) bytes but \(numel) \(dtype.rawValue) elements need \(need)")
        }
        return .storage(StorageRecord(key: key, dtype: dtype, elementCount: numel,
                                      bytes: FileSlice(path: entry.data.path, offset: entry.data.offset, count: need)))
    }

    /// The state dict inside: the root dict itself, or its `state_dict` entry (Lightning checkpoints).
    public var stateDict: PickleDict? {
        guard let d = root.dict else { return nil }
        if let inner = d["state_dict"]?.dict { return inner }
        return d
    }
}
