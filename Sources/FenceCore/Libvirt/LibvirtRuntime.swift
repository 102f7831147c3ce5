internal import CLibvirt
import FoundationEssentials
import Glibc
import Locking

/// Process-wide libvirt set-up, done once before the first connection is opened.
///
/// - `virInitialize` for thread safety;
/// - a no-op global error function, so libvirt's messages reach us through `LibvirtError`, not stderr;
/// - an event loop, which keepalive, the connection-close callback and domain events need: Fencegate's own
///   (`LibvirtEventLoop`), or, should it fail to start, libvirt's default one (`virEventRegisterDefaultImpl`)
///   on a dedicated thread running `virEventRunDefaultImpl` forever;
/// - SIGPIPE ignored, process-wide: libvirt's remote driver (every `qemu:///system` connection goes through
///   libvirtd's socket) writes with `write(2)`, so a libvirtd that dies mid-call would otherwise kill this
///   process with SIGPIPE instead of failing the call with EPIPE (seen in `LibvirtdRestartTests`). virsh
///   does the same.
enum LibvirtRuntime {
    /// Touch this before any libvirt call: nil once libvirt is ready, else why it is not. The initializer runs
    /// exactly once (Swift's lazy globals are atomic).
    static let failure: String? = {
        signal(SIGPIPE, SIG_IGN)
        guard virInitialize() == 0 else { return "virInitialize failed" }
        virSetErrorFunc(nil, silenceLibvirtErrors)
        do {
            try LibvirtEventLoop.register()
            return nil
        } catch {
            // Without epoll (never seen on Linux), libvirt's own loop does the same work at a higher cost.
            loopFailure.withLock { $0 = "\(error)" }
        }
        guard virEventRegisterDefaultImpl() == 0 else { return "virEventRegisterDefaultImpl failed" }
        do {
            try DetachedThread.start(name: "fencegate.libvirt-events") {
                while true {
                    if virEventRunDefaultImpl() < 0 {
                        virResetLastError()
                        DetachedThread.sleep(milliseconds: 100)
                    }
                }
            }
        } catch {
            return "\(error)"
        }
        return nil
    }()

    /// Why libvirt runs on its default event loop instead of Fencegate's (`LibvirtEventLoop`); nil when it runs
    /// on Fencegate's. Sets libvirt up first, as `failure` does.
    static var eventLoopFailure: String? {
        _ = failure
        return loopFailure.withLock { $0 }
    }
}

/// Why Fencegate's own event loop did not start, if it did not (libvirt's default one runs instead).
private let loopFailure = Locked<String?>(nil)

/// Installed as libvirt's global error function: errors are read from the thread-local last error instead.
private let silenceLibvirtErrors: virErrorFunc = { _, _ in }
