import CSystemShims
import Foundation
import Glibc

/// How the process ends when it is told to stop (SIGINT, SIGTERM, SIGHUP) or its reader goes
/// away (a closed pipe): partial outputs are removed and the process is gone at once, with
/// `_exit`, whatever its worker threads are doing (no atexit handler runs, none can wait on a
/// lock a stuck worker holds).
public enum Termination {
    /// How long cleanup may take before the process ends anyway.
    public static let cleanupLimit: useconds_t = 800_000

    /// Catches the termination signals on a thread of their own and makes failed writes
    /// report EPIPE / EFBIG instead of killing the process. Call first thing in `main`.
    public static func install() {
        let fd = tessera_catch_termination()
        guard fd >= 0 else { return }
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(fd, &byte, 1)
                if n == 1 { interrupted(by: Int32(byte)) }
                if n < 0, errno == EINTR { continue }
                return
            }
        }
        thread.name = "tessera.signals"
        thread.start()
    }

    /// Removes partial outputs, says so, and ends the process with 128 + `signal`.
    static func interrupted(by signal: Int32) -> Never {
        endWithin(cleanupLimit, status: 128 + signal)
        PartialOutputs.removeAll()
        StandardError.write("\ntessera: interrupted; partial output removed\n")
        _exit(128 + signal)
    }

    /// Standard output's reader has gone: removes partial outputs and ends quietly, killed
    /// by SIGPIPE as other Unix tools are.
    public static func brokenPipe() -> Never {
        endWithin(cleanupLimit, status: 128 + SIGPIPE)
        PartialOutputs.removeAll()
        tessera_die_of_broken_pipe()
    }

    /// Ends the process with `status` after `limit` microseconds, should cleanup hang.
    private static func endWithin(_ limit: useconds_t, status: Int32) {
        let watchdog = Thread {
            usleep(limit)
            _exit(status)
        }
        watchdog.start()
    }

    /// Ends the process with `status` now: flushes C's standard output (help text goes
    /// there) and calls `_exit`, so no exit handler can hang on a stuck thread.
    public static func exit(_ status: Int32) -> Never {
        fflush(nil)
        _exit(status)
    }
}
