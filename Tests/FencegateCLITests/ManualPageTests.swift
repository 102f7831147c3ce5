import Foundation
import TestSupport
import Testing

/// man/fencegate.toml.5, written by hand, the packaged configuration and the README's configuration example
/// list the same keys.
@Suite("fencegate.toml(5)")
struct ManualPageTests {
    /// Every `table.key` of the README's example, commented-out ones included (`# [cluster]`, `# tls_cert = …`).
    private static func readmeKeys() throws -> Set<String> {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- config:start -->\n```toml\n"))
        let end = try #require(readme.range(of: "```\n<!-- config:end -->"))
        return keys(inTOML: readme[start.upperBound..<end.lowerBound])
    }

    /// Every `table.key` of a TOML text, commented-out ones included.
    private static func keys(inTOML text: Substring) -> Set<String> {
        var keys: Set<String> = []
        var table = ""
        for rawLine in text.split(separator: "\n") {
            var line = Substring(rawLine)
            if line.hasPrefix("#") { line = line.dropFirst().drop { $0 == " " } }
            if line.hasPrefix("[") {
                table = String(line.prefix { $0 != "]" }.drop { $0 == "[" })
            } else if let equals = line.firstIndex(of: "="),
                line[..<equals].allSatisfy({ $0.isLetter || $0 == "_" || $0 == " " })
            {
                keys.insert(table + "." + line[..<equals].trimmingCharacters(in: .whitespaces))
            }
        }
        return keys
    }

    /// Every `table.key` of the man page: the words in `.B`/`.BR` lines after `.TP`, under `.SH "[table]"`.
    private static func manualKeys() throws -> Set<String> {
        let page = try String(contentsOfFile: packageRoot + "/man/fencegate.toml.5", encoding: .utf8)
        var keys: Set<String> = []
        var table: String?
        var afterTP = false
        for line in page.split(separator: "\n") {
            if line.hasPrefix(".SH ") {
                let heading = line.dropFirst(4).filter { $0 != "\"" }
                table = heading.hasPrefix("[") ? String(heading.filter { $0 != "[" && $0 != "]" }) : nil
            } else if afterTP, let table, line.hasPrefix(".B ") || line.hasPrefix(".BR ") {
                for word in line.split(separator: " ").dropFirst()
                where word.allSatisfy({ $0.isLowercase || $0 == "_" }) {
                    keys.insert(table + "." + word)
                }
            }
            afterTP = line == ".TP"
        }
        return keys
    }

    @Test("every key of the README's configuration example has an entry in the man page, and no other")
    func sameKeys() throws {
        let readme = try Self.readmeKeys()
        let manual = try Self.manualKeys()
        #expect(readme.count >= 39, "\(readme.sorted())")
        #expect(
            readme.subtracting(manual).isEmpty,
            "missing from man/fencegate.toml.5: \(readme.subtracting(manual).sorted())"
        )
        #expect(manual.subtracting(readme).isEmpty, "not in README's example: \(manual.subtracting(readme).sorted())")
    }

    @Test(
        "the packaged configuration (packaging/fencegate.toml) shows every key of the README's example, and passes config check"
    )
    func packagedConfiguration() async throws {
        let path = packageRoot + "/packaging/fencegate.toml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let packaged = Self.keys(inTOML: Substring(text))
        let readme = try Self.readmeKeys()
        #expect(readme.subtracting(packaged).isEmpty, "missing: \(readme.subtracting(packaged).sorted())")
        #expect(
            packaged.subtracting(readme).isEmpty,
            "not in README's example: \(packaged.subtracting(readme).sorted())"
        )
        let check = try await FencegateBinary().run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test("man reads the page without warnings")
    func manAcceptsThePage() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/man"), "install man-db")
        let result = try await runProgram(
            "/usr/bin/man",
            ["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", packageRoot + "/man/fencegate.toml.5"]
        )
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }
}
