import Foundation
import TestSupport
import Testing

/// The Debian package scripts/package builds, installed on this machine with the real dpkg, used, removed and
/// purged. Runs when `FENCEGATE_PACKAGE` names the .deb, as scripts/test sets it; it refuses to run where a
/// fencegate package, /etc/fencegate or /var/lib/fencegate is there already, and purges what it installed even
/// when a check fails.
@Suite("Debian package")
struct PackageTests {
    static let deb = ProcessInfo.processInfo.environment["FENCEGATE_PACKAGE"]
    static let unit = "/lib/systemd/system/fencegate.service"
    static let conffile = "/etc/fencegate/fencegate.toml"
    static let state = "/var/lib/fencegate"

    /// What dpkg and the installed binary run with: root's PATH (dpkg needs ldconfig), no Fencegate variables.
    static let environment: [String: String] = {
        var environment = Process.initialEnvironment
        environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        environment["DEBIAN_FRONTEND"] = "noninteractive"
        environment["FENCEGATE_DATABASE"] = nil
        environment["FENCEGATE_URI"] = nil
        environment["MANPAGER"] = "cat"
        environment["MANWIDTH"] = "100"
        return environment
    }()

    static func run(_ program: String, _ arguments: [String]) async throws -> ProgramResult {
        try await runProgram(program, arguments, environment: environment)
    }

    /// dpkg's state of the fencegate package: `not-installed`, `config-files`, `installed`…
    static func packageState() async throws -> String {
        let query = try await run("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Status}", "fencegate"])
        return query.status == 0 ? query.stdout : "not-installed"
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    @Test(
        "dpkg -i; --version, the unit, man, a fence; dpkg -r keeps the configuration and audit log; --purge leaves nothing",
        .enabled(if: deb != nil, "FENCEGATE_PACKAGE names no .deb (scripts/test builds one with scripts/package)"),
        .enabled(if: geteuid() == 0, "dpkg -i needs root")
    )
    func installUseRemovePurge() async throws {
        let deb = try #require(Self.deb)
        let before = try await Self.packageState()
        try #require(
            before == "not-installed" && !Self.exists("/etc/fencegate") && !Self.exists(Self.state),
            "refusing to run: a fencegate package (\(before)), /etc/fencegate or \(Self.state) is here already"
        )
        // The package's directories that exist before it: those must still exist after the purge.
        let listing = try await Self.run("/usr/bin/dpkg-deb", ["-c", deb])
        let directoriesBefore = Set(
            listing.stdout.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("d"), let path = line.split(separator: " ").last else { return nil }
                let absolute = String(path.dropFirst()).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                return Self.exists("/" + absolute) ? "/" + absolute : nil
            }
        )

        var failure: (any Error)?
        do {
            try await installAndCheck(deb: deb, directoriesBefore: directoriesBefore)
        } catch {
            failure = error
        }
        if try await Self.packageState() != "not-installed" {
            _ = try await Self.run("/usr/bin/dpkg", ["--purge", "fencegate"])
        }
        if let failure { throw failure }
    }

    private func installAndCheck(deb: String, directoriesBefore: Set<String>) async throws {
        let install = try await Self.run("/usr/bin/dpkg", ["-i", deb])
        try #require(install.status == 0, "dpkg -i: \(install.stdout)\(install.stderr)")

        // The binary: VERSION's version and the revision of this checkout, as the binary under test says;
        // no Swift runtime library needed.
        let version = try await Self.run("/usr/bin/fencegate", ["--version"])
        let built = try await FencegateBinary().run(["--version"])
        #expect(version.status == 0 && version.stdout == built.stdout, "\(version.stdout) vs \(built.stdout)")
        let ldd = try await Self.run("/usr/bin/ldd", ["/usr/bin/fencegate"])
        #expect(ldd.status == 0 && !ldd.stdout.contains("libswift"), "\(ldd.stdout)")

        // The unit, checked by systemd, runs the packaged binary on the packaged configuration.
        let unit = try String(contentsOfFile: Self.unit, encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/bin/fencegate serve --config /etc/fencegate/fencegate.toml\n"))
        let verify = try await Self.run("/usr/bin/systemd-analyze", ["verify", Self.unit])
        #expect(verify.status == 0 && !verify.stderr.contains("fencegate.service:"), "\(verify.stderr)")

        // The configuration: a conffile only root reads, valid as shipped; the audit log's directory is private.
        let conffiles = try await Self.run("/usr/bin/dpkg-query", ["-W", "-f=${Conffiles}", "fencegate"])
        #expect(conffiles.stdout.contains(" \(Self.conffile) "), "\(conffiles.stdout)")
        let manager = FileManager.default
        #expect(try manager.attributesOfItem(atPath: Self.conffile)[.posixPermissions] as? Int == 0o600)
        #expect(try manager.attributesOfItem(atPath: Self.state)[.posixPermissions] as? Int == 0o700)
        let check = try await Self.run("/usr/bin/fencegate", ["config", "check", Self.conffile])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")

        // Man pages and completions.
        for (page, text) in [
            ("fencegate", "fencegate.serve"), ("fencegate.serve", "--listen"), ("fencegate.toml", "operation_timeout"),
        ] {
            let man = try await Self.run("/usr/bin/man", [page])
            #expect(man.status == 0 && man.stdout.contains(text), "man \(page): \(man.stderr)")
        }
        let section = try await Self.run("/usr/bin/man", ["-w", "fencegate"])
        #expect(section.stdout.hasSuffix("/man8/fencegate.8.gz\n"), "\(section.stdout)")
        for completion in [
            "/usr/share/bash-completion/completions/fencegate", "/usr/share/zsh/vendor-completions/_fencegate",
            "/usr/share/fish/vendor_completions.d/fencegate.fish",
        ] {
            let text = (try? String(contentsOfFile: completion, encoding: .utf8)) ?? ""
            #expect(text.contains("fencegate") && text.contains("serve"), "\(completion)")
        }
        #expect(
            try await Self.run("/bin/bash", ["-n", "/usr/share/bash-completion/completions/fencegate"]).status == 0
        )

        // A fence from the installed binary, audited in a temporary database; then a status audited in the
        // default database, /var/lib/fencegate/audit.db as root.
        let directory = try TemporaryDirectory()
        let database = directory.file("audit.db")
        let off = try await Self.run(
            "/usr/bin/fencegate",
            ["off", "test", "--uri", "test:///default", "--database", database]
        )
        #expect(off.status == 0 && off.stdout.hasPrefix("test: off [operation 1, "), "\(off.stdout)\(off.stderr)")
        let audit = try await Self.run("/usr/bin/fencegate", ["audit", "--database", database])
        #expect(audit.stdout.contains(" off ") && audit.stdout.contains("success"), "\(audit.stdout)")
        // What an operator ships to a SIEM: `audit --follow` of the installed binary prints the fence above, then
        // one more as soon as it is committed, and ends cleanly on SIGTERM.
        let follow = try SpawnedProcess(
            "/usr/bin/fencegate",
            ["audit", "--follow", "--format", "json-lines", "--database", database],
            standardOutput: directory.file("follow.out"),
            standardError: directory.file("follow.err")
        )
        defer { if follow.isRunning { kill(follow.processIdentifier, SIGKILL) } }
        func followed() -> [String] {
            let text = (try? String(contentsOfFile: directory.file("follow.out"), encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map(String.init)
        }
        try await waitUntil("audit --follow prints the fence") { followed().count == 1 }
        let on = try await Self.run(
            "/usr/bin/fencegate",
            ["on", "test", "--uri", "test:///default", "--database", database]
        )
        #expect(on.status == 0, "\(on.stderr)")
        try await waitUntil("audit --follow prints the next operation") { followed().count == 2 }
        #expect(followed().first?.contains(#""action":"off""#) == true, "\(followed())")
        #expect(followed().last?.contains(#""action":"on""#) == true, "\(followed())")
        kill(follow.processIdentifier, SIGTERM)
        try await waitUntil("audit --follow exits") { !follow.isRunning }
        #expect(follow.terminationStatus == 0)

        let status = try await Self.run("/usr/bin/fencegate", ["status", "test", "--uri", "test:///default"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(Self.exists(Self.state + "/audit.db"))

        let files = try await Self.run("/usr/bin/dpkg", ["-L", "fencegate"])
        let paths = files.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("/") && $0 != "/." }
        #expect(paths.contains("/usr/bin/fencegate") && paths.contains(Self.unit), "\(paths)")

        // Removed: the program goes, the configuration and the audit log stay.
        let remove = try await Self.run("/usr/bin/dpkg", ["-r", "fencegate"])
        #expect(remove.status == 0, "\(remove.stdout)\(remove.stderr)")
        #expect(try await Self.packageState() == "config-files")
        #expect(!Self.exists("/usr/bin/fencegate") && !Self.exists(Self.unit))
        #expect(Self.exists(Self.conffile) && Self.exists(Self.state + "/audit.db"))

        // Purged: nothing of the package is left.
        let purge = try await Self.run("/usr/bin/dpkg", ["--purge", "fencegate"])
        #expect(purge.status == 0, "\(purge.stdout)\(purge.stderr)")
        #expect(try await Self.packageState() == "not-installed")
        let left = (paths + ["/etc/fencegate", Self.state]).filter {
            Self.exists($0) && !directoriesBefore.contains($0)
        }
        #expect(left.isEmpty, "left after dpkg --purge: \(left)")
    }
}
