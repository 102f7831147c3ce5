import Foundation

/// Threads, open descriptors and resident memory of a process, from /proc.
public struct ProcessCensus: Sendable, CustomStringConvertible {
    public let threads: Int
    public let descriptors: Int
    /// VmRSS, in KiB.
    public let residentKiB: Int

    public init(pid: Int32) throws {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return Int(
                line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? ""
            ) ?? 0
        }
        threads = field("Threads")
        residentKiB = field("VmRSS")
        descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    public var description: String {
        "\(threads) threads, \(descriptors) descriptors, \(residentKiB / 1024) MiB resident"
    }
}
