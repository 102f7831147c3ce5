import Foundation

/// A fresh directory under the system temporary directory, removed when the value is deallocated.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init() throws {
        let template = NSTemporaryDirectory() + "fencegate-store-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard mkdtemp(&bytes) != nil else { throw CocoaError(.fileWriteUnknown) }
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
