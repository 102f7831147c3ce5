import FoundationEssentials
import Glibc

/// An inotify instance (`inotify_init1`): watches added to it report changes to files as events read from its
/// descriptor. Non-blocking and close-on-exec; the descriptor is closed in `deinit`.
///
/// Sendable: the descriptor never changes, and the kernel serializes reads and watch changes on it.
final class Inotify: Sendable {
    let descriptor: Int32

    /// One change reported by the kernel.
    struct Event: Equatable {
        /// The watch it belongs to (-1 for `IN_Q_OVERFLOW`: events were lost).
        let watch: Int32
        let mask: UInt32
        /// For a watched directory, the name of the file inside it the event is about; else empty.
        let name: String
    }

    /// Calls `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`.
    init() throws(InotifyError) {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else { throw InotifyError(operation: "inotify_init1", path: nil, code: errno) }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    /// Watches `path` for the events in `mask` (`IN_MODIFY`…); returns the watch's number. Calls
    /// `inotify_add_watch`.
    @discardableResult
    func addWatch(_ path: String, mask: UInt32) throws(InotifyError) -> Int32 {
        let watch = inotify_add_watch(descriptor, path, mask)
        guard watch >= 0 else { throw InotifyError(operation: "inotify_add_watch", path: path, code: errno) }
        return watch
    }

    /// Every event queued now; empty when there is none (the descriptor never blocks).
    func readEvents() throws(InotifyError) -> [Event] {
        var events: [Event] = []
        // Room for many events at once, each at most a header and a file name.
        var buffer = [UInt8](repeating: 0, count: 16 * (Self.headerSize + Int(NAME_MAX) + 1))
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return events }
                throw InotifyError(operation: "read", path: nil, code: code)
            }
            if count == 0 { return events }
            events += Self.parse(buffer[..<count])
        }
    }

    /// `struct inotify_event`: int wd, uint32 mask, cookie, len, then `len` bytes of NUL-padded name.
    static let headerSize = 16

    /// The events in `bytes`, as the kernel lays them out (native byte order); a truncated tail is dropped.
    static func parse(_ bytes: ArraySlice<UInt8>) -> [Event] {
        /// A 32-bit field in the host's byte order: assembled little-endian, then swapped on a big-endian host.
        func word(_ offset: Int) -> UInt32 {
            let littleEndian = (0..<4).reduce(UInt32(0)) { value, index in
                value | UInt32(bytes[offset + index]) << (8 * UInt32(index))
            }
            return UInt32(littleEndian: littleEndian)
        }
        var events: [Event] = []
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= headerSize {
            let length = Int(word(offset + 12))
            guard bytes.endIndex - offset - headerSize >= length else { break }
            let nameBytes = bytes[(offset + headerSize)..<(offset + headerSize + length)].prefix { $0 != 0 }
            events.append(
                Event(
                    watch: Int32(bitPattern: word(offset)),
                    mask: word(offset + 4),
                    name: String(decoding: nameBytes, as: UTF8.self)
                )
            )
            offset += headerSize + length
        }
        return events
    }
}

/// An inotify call that failed: the call, the path it was about, and the errno.
public struct InotifyError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String?
    public let code: Int32

    public var description: String {
        "\(operation)\(path.map { " \($0)" } ?? ""): \(String(cString: strerror(code)))"
    }
}
