import Glibc

/// A POSIX thread of our own, started detached: for blocking loops and calls that must never occupy Swift's
/// cooperative pool (libvirt's event loop, the blocking pools, corosync's dispatch, the gateway's receive loop).
package enum DetachedThread {
    /// The system refused a thread (`pthread_create`: out of threads, memory or the process's task limit).
    package struct StartFailure: Error, CustomStringConvertible {
        package let thread: String
        package let code: Int32

        package var description: String {
            "cannot start the thread \(thread): \(String(cString: strerror(code)))"
        }
    }

    /// Starts `body` on a new detached thread named `name` (what `top -H` and `/proc/PID/task/*/comm` show:
    /// at most 15 bytes, so a leading `fencegate.` is dropped and the rest cut to fit); `body` never runs if
    /// this throws.
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(StartFailure) {
        let box = Unmanaged.passRetained(ThreadBody(name: shortName(name), body: body)).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, runThreadBody, box)
        guard started == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw StartFailure(thread: name, code: started)
        }
        pthread_detach(thread)
    }

    /// The name as the kernel keeps it: 15 bytes, without the process's own name in front.
    static func shortName(_ name: String) -> String {
        let trimmed =
            name.utf8.count > 15 && name.hasPrefix("fencegate.") ? name.dropFirst("fencegate.".count) : name[...]
        var short = ""
        for scalar in trimmed.unicodeScalars {
            guard short.utf8.count + String(scalar).utf8.count <= 15 else { break }
            short.unicodeScalars.append(scalar)
        }
        return short
    }

    /// Sleeps the calling thread (never call it from Swift's cooperative pool).
    package static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
    }
}

/// A new thread's entry: names the thread, then runs its body (the box `start` retained for it).
private func runThreadBody(_ pointer: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let box = Unmanaged<ThreadBody>.fromOpaque(pointer!).takeRetainedValue()
    nameThisThread(box.name)
    box.body()
    return nil
}

/// Names the calling thread as `pthread_setname_np` does (which Swift's Glibc module leaves out): by writing its
/// `comm` file. Best effort: a thread left unnamed works the same.
private func nameThisThread(_ name: String) {
    let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    defer { close(descriptor) }
    _ = Array(name.utf8).withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
}

private final class ThreadBody {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}
