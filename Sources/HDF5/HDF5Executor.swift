import CHDF5
import CHDF5Shims
import Glibc
import Platform
import Synchronization

/// The one way into libhdf5: every call this module makes to it (and to its C shims) runs
/// inside ``run(_:)``, one caller at a time, process-wide, on the caller's thread. libhdf5 is
/// thread-safe only when built so, and the zstd filter and the O_DIRECT driver Tessera
/// registers run inside its calls, so the module does not count on the build: it serialises
/// the calls itself. A caller already inside may enter again (an object closed inside another
/// call). Work that needs no libhdf5 (compressing, decompressing, hashing) runs outside, in
/// parallel.
enum HDF5Executor {
    private static let lock = RecursiveLock()
    /// How deep the caller holding the lock is (only that caller reads or writes it).
    nonisolated(unsafe) private static var depth = 0
    /// The thread holding the lock (0: none).
    private static let owner = Atomic<UInt>(0)

    /// True on the thread running inside ``run(_:)``: helpers that call libhdf5 assert it.
    static var isInside: Bool { owner.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Runs `body`, which may call libhdf5, alone. The first call prepares the library
    /// (`tessera_hdf5_setup`: version check, zstd filter, O_DIRECT driver) and fails, as every
    /// later call does, if it cannot be (naming `file`, the file being opened, if given).
    static func run<T: ~Copyable>(file: String? = nil, _ body: () throws(TesseraError) -> T) throws(TesseraError) -> T {
        lock.lock()
        defer { lock.unlock() }
        if depth == 0 { try prepareThisThread(file: file) }
        depth += 1
        owner.store(UInt(pthread_self()), ordering: .relaxed)
        defer {
            depth -= 1
            if depth == 0 { owner.store(0, ordering: .relaxed) }
        }
        return try body()
    }

    private static func prepareThisThread(file: String?) throws(TesseraError) {
        if let failure = tessera_hdf5_setup() { throw TesseraError(.unsupported, String(cString: failure), file: file) }
        // No error stacks printed (a thread-safe libhdf5 keeps this setting per thread):
        // failures reach the user as TesseraErrors instead.
        H5Eset_auto2(hid_t(0), nil, nil)
    }
}

/// A mutex its holder may lock again (pthread's recursive mutex).
private final class RecursiveLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}
