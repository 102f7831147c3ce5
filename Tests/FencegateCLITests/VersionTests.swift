import Foundation
import TestSupport
import Testing

@Suite("fencegate --version")
struct VersionTests {
    private static let version =
        (try? String(contentsOfFile: packageRoot + "/VERSION", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? "VERSION unreadable"

    @Test("prints VERSION's version and the git revision of the checkout it was built from")
    func versionAndRevision() async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(["--version"])
        #expect(result.status == 0, "\(result.stderr)")
        let head = try await runProgram("/usr/bin/git", ["-C", packageRoot, "rev-parse", "--short=7", "HEAD"])
        try #require(head.status == 0, "the tests run from a git checkout: \(head.stderr)")
        let commit = head.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let line = result.stdout.trimmingCharacters(in: .newlines)
        #expect(
            line == "fencegate \(Self.version) (git \(commit))"
                || line == "fencegate \(Self.version) (git \(commit)-dirty)",
            "\(line)"
        )
    }

    @Test(
        "scripts/build-version: the revision of a git checkout; \"unknown revision\" outside git; rewritten only on change"
    )
    func buildVersionScript() async throws {
        let directory = try TemporaryDirectory()
        let source = directory.file("source")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: false)
        try "1.2.3\n".write(toFile: source + "/VERSION", atomically: true, encoding: .utf8)
        let output = directory.file("generated")
        let script = packageRoot + "/scripts/build-version"
        let generated = output + "/BuildVersion.swift"

        #expect(try await runProgram("/bin/sh", [script, source, output]).status == 0)
        var text = try String(contentsOfFile: generated, encoding: .utf8)
        #expect(text.contains(#"static let description = "fencegate 1.2.3 (unknown revision)""#), "\(text)")
        let written = try FileManager.default.attributesOfItem(atPath: generated)[.modificationDate] as? Date

        try await Task.sleep(for: .milliseconds(20))
        #expect(try await runProgram("/bin/sh", [script, source, output]).status == 0)
        #expect(try FileManager.default.attributesOfItem(atPath: generated)[.modificationDate] as? Date == written)

        let git = ["-C", source, "-c", "user.name=t", "-c", "user.email=t@t"]
        #expect(try await runProgram("/usr/bin/git", ["init", "-q", source]).status == 0)
        #expect(try await runProgram("/usr/bin/git", git + ["add", "VERSION"]).status == 0)
        #expect(try await runProgram("/usr/bin/git", git + ["commit", "-q", "-m", "v"]).status == 0)
        let commit = try await runProgram("/usr/bin/git", ["-C", source, "rev-parse", "--short=7", "HEAD"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await runProgram("/bin/sh", [script, source, output]).status == 0)
        text = try String(contentsOfFile: generated, encoding: .utf8)
        #expect(text.contains(#"static let description = "fencegate 1.2.3 (git \#(commit))""#), "\(text)")

        try "1.2.4\n".write(toFile: source + "/VERSION", atomically: true, encoding: .utf8)
        #expect(try await runProgram("/bin/sh", [script, source, output]).status == 0)
        text = try String(contentsOfFile: generated, encoding: .utf8)
        #expect(text.contains(#"static let description = "fencegate 1.2.4 (git \#(commit)-dirty)""#), "\(text)")
    }
}
