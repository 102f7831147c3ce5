import Foundation
import TestSupport
import Testing

/// The fuzz targets' seed corpora and every crash found so far (kept in Fuzz/corpus/) replayed through the
/// same harness the fuzzer runs, built normally: each must pass its invariants. `Fuzz/run` does the fuzzing.
@Suite("Fuzz corpora replay cleanly")
struct FuzzCorpusTests {
    @Test("every corpus input passes", arguments: ["fence-xvm", "challenge-response", "http", "mhd", "cluster-wire"])
    func replay(target: String) async throws {
        let binary = FencegateBinary.url.deletingLastPathComponent().appendingPathComponent("fuzz-\(target)").path
        #expect(FileManager.default.isExecutableFile(atPath: binary), "\(binary) was not built")
        let corpus = packageRoot + "/Fuzz/corpus/" + target
        let inputs = try FileManager.default.contentsOfDirectory(atPath: corpus).count
        #expect(inputs > 0)
        let result = try await runProgram(binary, [corpus])
        // A crash report starts with the failed precondition's message and ends with the images: show both ends.
        let report =
            result.stderr.count <= 3000
            ? result.stderr : "\(result.stderr.prefix(2000))\n…\n\(result.stderr.suffix(1000))"
        #expect(result.status == 0, "\(report)")
        #expect(result.stdout.contains("replayed \(inputs) inputs"), "\(result.stdout)")
    }
}
