internal import CLibvirt
import FoundationEssentials
import Glibc

/// Process-wide libvirt set-up, done once before the first connection is opened.
///
/// - `virInitialize` for thread safety;
/// - a no-op global error function, so libvirt's messages reach us through `LibvirtError`, not stderr;
/// - `virEventRegisterDefaultImpl` and a dedicated thread running `virEventRunDefaultImpl` forever, which
///   keepalive and the connection-close callback need;
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
}

/// Installed as libvirt's global error function: errors are read from the thread-local last error instead.
private let silenceLibvirtErrors: virErrorFunc = { _, _ in }
