import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

@Suite("Audit store: the space kept for fences")
struct SpaceReserveTests {
    @Test("freeing the space kept writes a few pages to the write-ahead log, not the space itself")
    func releaseWritesLittle() async throws {
        let directory = try TemporaryDirectory()
        var reserve = AuditSpaceReserve()
        reserve.highWater = 0  // kept at open, whatever the disk
        reserve.lowWater = Int.max  // freed by the first commit
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, syncsCompletionsLater: true, reserve: reserve, logger: logger)
        #expect(!store.reserveInUse)
        try await store.truncateWriteAheadLog()
        _ = try await store.record(intent("pcmk1", at: 1), completion())
        #expect(store.reserveInUse)
        let walBytes = try #require(try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int)
        #expect(walBytes < 256 << 10, "\(walBytes) bytes written to free \(reserve.bytes)")
    }
}
