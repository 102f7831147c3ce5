import Foundation
import Store
import Synchronization
import Testing

@testable import FenceCore

/// The service links FoundationEssentials only; what it used from Foundation is rewritten on the standard
/// library and POSIX. Each rewrite is checked here against the Foundation call it replaces (tests link Foundation).
@Suite("What replaces Foundation's NSString, String(format:) and NSCondition behaves as they did")
struct FoundationReplacementTests {
    static let texts = [
        "", "  ", "abc", " abc ", "\tabc\t", "\u{00A0}abc\u{3000}", "a b", " \n abc \n ", "\u{2003}", "\r\nx\u{2028}",
        "\u{85}y\u{0B}", "é ", " \u{1F600} ",
    ]

    @Test("trimmingSpaces agrees with Foundation's trimming of .whitespaces", arguments: texts)
    func trimsSpaces(text: String) {
        #expect(String(text.trimmingSpaces) == text.trimmingCharacters(in: .whitespaces))
        #expect(String(text[...].trimmingSpaces) == text.trimmingCharacters(in: .whitespaces))
    }

    @Test("trimmingWhitespace agrees with Foundation's trimming of .whitespacesAndNewlines", arguments: texts)
    func trimsWhitespace(text: String) {
        #expect(String(text.trimmingWhitespace) == text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test(
        "parentPath agrees with NSString's deletingLastPathComponent",
        arguments: [
            "/", "/a", "/a/", "/a/b", "/a/b/", "a/b", "a//b", "/a//b", "/a/b//", "./a", "/var/lib/fencegate/audit.db",
            "relative/dir/file.toml", "/é/ü", "/srv/\u{301}k/key", "/a/\u{200D}/b",
        ]
    )
    func parentPath(path: String) {
        #expect(path.parentPath == (path as NSString).deletingLastPathComponent)
    }

    /// Where Foundation on Linux is no oracle: it traps on a single relative component and gives "" for "//".
    @Test("parentPath of a bare name, the empty path and repeated slashes")
    func parentPathEdges() {
        #expect("a".parentPath == "")
        #expect("a/".parentPath == "")
        #expect("".parentPath == "")
        #expect("//".parentPath == "/")
        #expect("///a".parentPath == "/")
        // A `/` that starts a Character with a combining mark is still a separator: /srv is not skipped.
        #expect("/srv/\u{301}k".parentPath == "/srv")
    }

    @Test("zeroPadded writes what printf's %03d, %02x and %04X write", arguments: [0, 7, 42, 255, 999, 4096, 65535])
    func zeroPaddedAsPrintf(value: Int) {
        #expect(zeroPadded(value, width: 3) == String(format: "%03d", value))
        #expect(zeroPadded(value, width: 2, radix: 16) == String(format: "%02x", value))
        #expect(zeroPadded(value, width: 4, radix: 16, uppercase: true) == String(format: "%04X", value))
    }

    @Test("A file error reads as the system's message")
    func fileErrorReadsAsStrerror() throws {
        let missing = "/nonexistent-\(UInt64.random(in: 0...UInt64.max))/file"
        let error = try #require(throws: (any Error).self) { try String(contentsOfFile: missing, encoding: .utf8) }
        #expect(fileErrorText(error) == "No such file or directory")
        let directoryError = try #require(throws: (any Error).self) {
            try FileManager.default.createDirectory(atPath: "/proc/fencegate-test/x", withIntermediateDirectories: true)
        }
        #expect(["No such file or directory", "Permission denied"].contains(fileErrorText(directoryError)))
    }

    @Test("A thread condition's timed wait times out, and a signal ends a wait")
    func threadCondition() async throws {
        let condition = ThreadCondition()
        condition.lock()
        let clock = ContinuousClock()
        let began = clock.now
        #expect(condition.wait(seconds: 0.05) == false)
        condition.unlock()
        #expect(clock.now - began >= .milliseconds(45))

        let woken = Mutex(false)
        let ready = Mutex(false)
        try DetachedThread.start(name: "fencegate.condition-test") {
            condition.lock()
            ready.withLock { $0 = true }
            let signalled = condition.wait(seconds: 30)
            condition.unlock()
            woken.withLock { $0 = signalled }
        }
        while !ready.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
        condition.lock()
        condition.signal()
        condition.unlock()
        let deadline = clock.now + .seconds(10)
        while !woken.withLock({ $0 }), clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(woken.withLock { $0 })
    }

    @Test("A detached thread gets its name, cut to the kernel's 15 bytes without the process's name in front")
    func threadNames() async throws {
        #expect(DetachedThread.shortName("fencegate.libvirt-events") == "libvirt-events")
        #expect(DetachedThread.shortName("fencegate.reads") == "fencegate.reads")
        #expect(DetachedThread.shortName("a-very-long-thread-name") == "a-very-long-thr")
        #expect(DetachedThread.shortName("ééééééééé").utf8.count <= 15)
        let seen = Mutex<String?>(nil)
        try DetachedThread.start(name: "fencegate.name-test") {
            let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            seen.withLock { $0 = String(comm.trimmingWhitespace) }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while seen.withLock({ $0 }) == nil, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(seen.withLock { $0 } == "name-test")
    }
}
