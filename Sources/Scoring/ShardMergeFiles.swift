import Foundation
import Platform

extension ShardMerge {
    /// Writes the merged output to the file `output`, atomically (an existing file is replaced
    /// only with `force`), then its manifest to `manifest` (by default `OUTPUT.manifest.json`);
    /// returns where the manifest went.
    public func write(output: String, force: Bool, manifest: String?) throws(TesseraError) -> String {
        let destination = try AtomicDestination(output, force: force)
        let digest: String
        do throws(TesseraError) {
            var file = try OutputFile(creating: destination.temporaryPath)
            digest = try write(to: &file)
            try file.close()
            try destination.commit()
        } catch {
            destination.abandon()
            throw error.inFile(output)
        }
        let manifestPath = manifest ?? output + ".manifest.json"
        let text = self.manifest(output: output, outputSHA256: digest).python + "\n"
        let temporary = manifestPath + ".tessera-partial"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)), rename(temporary, manifestPath) == 0 else {
            throw TesseraError(.io, "cannot write the manifest", file: manifestPath)
        }
        return manifestPath
    }
}
