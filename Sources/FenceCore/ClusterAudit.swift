import FoundationEssentials
public import Store

/// A position in the cluster's merged audit log: newest first by request time, then host name, then id
/// (descending), as `C-MICROSECONDS-ID-HOSTHEX` (the host's name in hexadecimal UTF-8). Clients pass it back
/// unchanged.
public struct ClusterAuditCursor: Sendable, Equatable, CustomStringConvertible {
    public let requestedAtMicroseconds: Int64
    public let host: String
    public let id: Int64

    public init(requestedAtMicroseconds: Int64, host: String, id: Int64) {
        self.requestedAtMicroseconds = requestedAtMicroseconds
        self.host = host
        self.id = id
    }

    /// Parses a cursor produced by `description`; nil for anything else.
    public init?(encoded: String) {
        let parts = encoded.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "C", parts[3].count <= 510, parts[3].count % 2 == 0,
            parts[1...2].allSatisfy({ (1...18).contains($0.count) && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            let time = Int64(parts[1]), let id = Int64(parts[2])
        else { return nil }
        var bytes: [UInt8] = []
        var hex = parts[3][...]
        while !hex.isEmpty {
            guard let byte = UInt8(hex.prefix(2), radix: 16) else { return nil }
            bytes.append(byte)
            hex = hex.dropFirst(2)
        }
        // Host names are UTF-8; other bytes (a cursor not made here) still give a position.
        self.init(requestedAtMicroseconds: time, host: String(decoding: bytes, as: UTF8.self), id: id)
    }

    public var description: String {
        "C-\(requestedAtMicroseconds)-\(id)-" + host.utf8.map { zeroPadded($0, width: 2, radix: 16) }.joined()
    }

    /// Where `host`'s own log continues after this position: its rows that come later in the merged order.
    public func cursor(forHost name: String) -> AuditCursor {
        let id: Int64 =
            if name < host {
                Int64.max  // at the same time, every row of this host comes later
            } else if name == host {
                self.id
            } else {
                0  // at the same time, every row of this host came before
            }
        return AuditCursor(requestedAtMicroseconds: requestedAtMicroseconds, id: id)
    }
}

/// One row of the merged audit log, and the host whose log it is in.
public struct ClusterAuditEntry: Sendable, Equatable {
    public var host: String
    public var record: AuditRecord

    public init(host: String, record: AuditRecord) {
        self.host = host
        self.record = record
    }
}

/// One page of the cluster's merged audit log.
public struct ClusterAuditPage: Sendable, Equatable {
    public var entries: [ClusterAuditEntry]
    /// Nil on the last page.
    public var nextCursor: ClusterAuditCursor?
    /// Hosts whose log could not be read (they left, or did not answer in time, or their audit log failed),
    /// with the reason: the page lacks their rows.
    public var unavailableHosts: [String: String]

    public init(entries: [ClusterAuditEntry], nextCursor: ClusterAuditCursor?, unavailableHosts: [String: String]) {
        self.entries = entries
        self.nextCursor = nextCursor
        self.unavailableHosts = unavailableHosts
    }

    /// The most rows of one page of the merged log (each host sends up to this many in one message).
    public static let maximumLimit = 100

    /// Merges each host's page (its rows after the cursor, newest first, at most `limit`) into one page.
    public static func merge(
        _ pages: [String: [AuditRecord]],
        limit: Int,
        unavailableHosts: [String: String]
    ) -> ClusterAuditPage {
        let all = pages.flatMap { host, records in records.map { ClusterAuditEntry(host: host, record: $0) } }
            .sorted { left, right in
                let l = (left.record.requestedAt.microsecondsSince1970, left.host, left.record.id)
                let r = (right.record.requestedAt.microsecondsSince1970, right.host, right.record.id)
                return l > r
            }
        let entries = Array(all.prefix(limit))
        // More may follow if rows were left out, or if a host sent a full page (it may have more).
        let more = all.count > limit || pages.values.contains { $0.count >= limit }
        let next =
            more
            ? entries.last.map {
                ClusterAuditCursor(
                    requestedAtMicroseconds: $0.record.requestedAt.microsecondsSince1970,
                    host: $0.host,
                    id: $0.record.id
                )
            } : nil
        return ClusterAuditPage(entries: entries, nextCursor: next, unavailableHosts: unavailableHosts)
    }
}
