import Checkpoints
import Foundation
import Platform
import Synchronization

/// A progress bar on stderr (bytes, rate, ETA), drawn only when stderr is a terminal.
final class Progress: Sendable {
    private let total: Int
    private let label: String
    private let enabled: Bool
    private let start = Date()
    private let state = Mutex<(done: Int, lastDraw: Double)>((0, 0))

    init(total: Int, label: String, enabled: Bool = true) {
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled && isatty(2) != 0
    }

    func advance(_ bytes: Int) {
        guard enabled else { return }
        let now = Date().timeIntervalSince(start)
        let draw: Int? = state.withLock { s in
            s.done += bytes
            guard now - s.lastDraw > 0.1 || s.done >= total else { return nil }
            s.lastDraw = now
            return s.done
        }
        if let done = draw { render(done, elapsed: now) }
    }

    private func render(_ done: Int, elapsed: Double) {
        let frac = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(frac * Double(width))
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r%@ [%@] %5.1f%% %@ %@/s ETA %.0fs ", label, bar, frac * 100,
                          formatBytes(done), formatBytes(Int(rate)), eta)
        StandardError.write(line)
    }

    func finish() {
        guard enabled else { return }
        StandardError.write("\n")
    }
}
