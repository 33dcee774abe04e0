import Foundation
import Platform

extension ShardMerge {
    /// Writes the merged output to the file `output`, atomically (an existing file is replaced
    /// only with `force`), then its manifest to `manifest` (by default `OUTPUT.manifest.json`);
    /// returns where the manifest went.
    public func write(output: String, force: Bool, manifest: String?) throws(TesseraError) -> String {
        try input.checkNotInput(output)
        let digest = try Self.writeAtomically(output, force: force) { (file) throws(TesseraError) in try write(to: &file) }
        let manifestPath = manifest ?? output + ".manifest.json"
        let text = Array((self.manifest(output: output, outputSHA256: digest).python + "\n").utf8)
        // A manifest left by an earlier merge describes another output: it is replaced.
        _ = try Self.writeAtomically(manifestPath, force: true) { (file) throws(TesseraError) in try file.write(text) }
        return manifestPath
    }

    /// Writes `path` through `body` into a temporary file renamed into place when complete,
    /// every write checked; nothing is left when it fails.
    private static func writeAtomically<R>(_ path: String, force: Bool,
                                           _ body: (inout OutputFile) throws(TesseraError) -> R) throws(TesseraError) -> R {
        let destination = try AtomicDestination(path, force: force)
        do throws(TesseraError) {
            var file = try OutputFile(creating: destination.temporaryPath)
            let result = try body(&file)
            try file.close()
            try destination.commit()
            return result
        } catch {
            destination.abandon()
            throw error.inFile(path)
        }
    }
}
