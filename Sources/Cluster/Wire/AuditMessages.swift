public import FenceCore
import FoundationEssentials
public import Store

/// A member asks every host for its part of a merged audit page (kind `auditQuery`): the query's filters,
/// already scoped to what the asker's requester may see, and the position after which to read.
public struct AuditQueryMessage: Sendable, Equatable {
    public let serial: UInt64
    public let query: AuditQuery
    public let cursor: ClusterAuditCursor?

    static let patternLimit = 64

    public init(serial: UInt64, query: AuditQuery, cursor: ClusterAuditCursor?) {
        self.serial = serial
        var query = query
        query.limit = min(max(query.limit, 1), ClusterAuditPage.maximumLimit)
        query.domainPatterns = query.domainPatterns.map { Array($0.prefix(Self.patternLimit)) }
        query.cursor = nil
        self.query = query
        self.cursor = cursor
    }

    func encode(into writer: inout WireWriter) {
        writer.write(serial)
        for text in [query.domain, query.action, query.source, query.result?.rawValue, query.requester] {
            writer.write(optional: text.map { truncated($0, to: Hello.textLimit) })
        }
        writer.write(UInt8(query.domainPatterns == nil ? 0 : 1))
        if let patterns = query.domainPatterns {
            writer.write(UInt16(patterns.count))
            // Token patterns are at most 256 bytes (a domain name's bound): never cut, which could widen them.
            for pattern in patterns { writer.write(text: truncated(pattern, to: DomainReport.nameLimit)) }
        }
        writer.write(optional: query.since?.microsecondsSince1970)
        writer.write(optional: query.until?.microsecondsSince1970)
        writer.write(UInt16(query.limit))
        writer.write(UInt8(cursor == nil ? 0 : 1))
        if let cursor {
            writer.write(UInt64(bitPattern: cursor.requestedAtMicroseconds))
            writer.write(text: truncated(cursor.host, to: Hello.textLimit))
            writer.write(UInt64(bitPattern: cursor.id))
        }
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        serial = try reader.uint64("serial")
        var query = AuditQuery()
        query.domain = try reader.optionalText("domain", limit: Hello.textLimit)
        query.action = try reader.optionalText("action", limit: Hello.textLimit)
        query.source = try reader.optionalText("source", limit: Hello.textLimit)
        if let result = try reader.optionalText("result", limit: Hello.textLimit) {
            guard let parsed = AuditResult(rawValue: result) else { throw .invalid(field: "result") }
            query.result = parsed
        }
        query.requester = try reader.optionalText("requester", limit: Hello.textLimit)
        switch try reader.uint8("domain patterns present") {
        case 0: query.domainPatterns = nil
        case 1:
            let count = Int(try reader.uint16("domain pattern count"))
            guard count <= Self.patternLimit else {
                throw .tooLong(field: "domain patterns", length: count, limit: Self.patternLimit)
            }
            var patterns: [String] = []
            for _ in 0..<count { patterns.append(try reader.text("domain pattern", limit: DomainReport.nameLimit)) }
            query.domainPatterns = patterns
        default: throw .invalid(field: "domain patterns present")
        }
        query.since = try reader.optionalTime("since")
        query.until = try reader.optionalTime("until")
        let limit = Int(try reader.uint16("limit"))
        guard (1...ClusterAuditPage.maximumLimit).contains(limit) else { throw .invalid(field: "limit") }
        query.limit = limit
        self.query = query
        switch try reader.uint8("cursor present") {
        case 0: cursor = nil
        case 1:
            cursor = ClusterAuditCursor(
                requestedAtMicroseconds: Int64(bitPattern: try reader.uint64("cursor time")),
                host: try reader.text("cursor host", limit: Hello.textLimit),
                id: Int64(bitPattern: try reader.uint64("cursor id"))
            )
        default: throw .invalid(field: "cursor present")
        }
    }
}

/// A host's part of a merged audit page (kind `auditPage`), for the member that asked.
public struct AuditPageMessage: Sendable, Equatable {
    public let receiver: CPGMember
    public let serial: UInt64
    public let hostName: String
    /// Its rows after the cursor, newest first; or why it could not read them.
    public let result: Result<[AuditRecord], AuditReadFailure>

    /// Why a host could not read its audit log.
    public struct AuditReadFailure: Error, Sendable, Equatable {
        public let reason: String
    }

    static let messageLimit = 1024

    public init(receiver: CPGMember, serial: UInt64, hostName: String, result: Result<[AuditRecord], AuditReadFailure>)
    {
        self.receiver = receiver
        self.serial = serial
        self.hostName = truncated(hostName, to: Hello.textLimit)
        self.result = result.map { Array($0.prefix(ClusterAuditPage.maximumLimit)) }
            .mapError { AuditReadFailure(reason: truncated($0.reason, to: Self.messageLimit)) }
    }

    func encode(into writer: inout WireWriter) {
        writer.write(receiver)
        writer.write(serial)
        writer.write(text: hostName)
        switch result {
        case .success(let records):
            writer.write(UInt8(0))
            writer.write(UInt16(records.count))
            for record in records { Self.encode(record, into: &writer) }
        case .failure(let failure):
            writer.write(UInt8(1))
            writer.write(text: failure.reason)
        }
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        receiver = try reader.member("receiver")
        serial = try reader.uint64("serial")
        hostName = try reader.text("host name", limit: Hello.textLimit)
        switch try reader.uint8("outcome") {
        case 0:
            let count = Int(try reader.uint16("record count"))
            guard count <= ClusterAuditPage.maximumLimit else {
                throw .tooLong(field: "records", length: count, limit: ClusterAuditPage.maximumLimit)
            }
            var records: [AuditRecord] = []
            for _ in 0..<count { records.append(try Self.decodeRecord(&reader)) }
            result = .success(records)
        case 1:
            result = .failure(AuditReadFailure(reason: try reader.text("reason", limit: Self.messageLimit)))
        default:
            throw .invalid(field: "outcome")
        }
    }

    /// One audit row: every text cut to its bound (255 bytes, the message 1,024), so that a page of
    /// `ClusterAuditPage.maximumLimit` rows always fits in one message.
    private static func encode(_ record: AuditRecord, into writer: inout WireWriter) {
        writer.write(UInt64(bitPattern: record.id))
        writer.write(UInt64(bitPattern: record.requestedAt.microsecondsSince1970))
        writer.write(optional: record.finishedAt?.microsecondsSince1970)
        writer.write(optional: record.duration.map(Self.microseconds))
        for text in [record.source, record.target, record.action, record.state.rawValue] {
            writer.write(text: truncated(text, to: Hello.textLimit))
        }
        for text in [
            record.requester, record.clientAddress, record.domainName, record.domainUUID, record.result?.rawValue,
            record.powerState, record.errorCode,
        ] {
            writer.write(optional: text.map { truncated($0, to: Hello.textLimit) })
        }
        writer.write(optional: record.message.map { truncated($0, to: messageLimit) })
    }

    /// A duration in whole microseconds, exactly (what `Duration.microseconds` gives back).
    private static func microseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000
    }

    private static func decodeRecord(_ reader: inout WireReader) throws(WireError) -> AuditRecord {
        let id = Int64(bitPattern: try reader.uint64("id"))
        let requestedAt = try reader.time("requested at")
        let finishedAt = try reader.optionalTime("finished at")
        let duration = try reader.optionalInt64("duration").map { Duration.microseconds($0) }
        let source = try reader.text("source", limit: Hello.textLimit)
        let target = try reader.text("target", limit: Hello.textLimit)
        let action = try reader.text("action", limit: Hello.textLimit)
        guard let state = AuditState(rawValue: try reader.text("state", limit: Hello.textLimit)) else {
            throw .invalid(field: "state")
        }
        let requester = try reader.optionalText("requester", limit: Hello.textLimit)
        let clientAddress = try reader.optionalText("client address", limit: Hello.textLimit)
        let domainName = try reader.optionalText("domain name", limit: Hello.textLimit)
        let domainUUID = try reader.optionalText("domain uuid", limit: Hello.textLimit)
        let resultText = try reader.optionalText("result", limit: Hello.textLimit)
        let result = try resultText.map { text throws(WireError) in
            guard let result = AuditResult(rawValue: text) else { throw .invalid(field: "result") }
            return result
        }
        let powerState = try reader.optionalText("power", limit: Hello.textLimit)
        let errorCode = try reader.optionalText("error code", limit: Hello.textLimit)
        let message = try reader.optionalText("message", limit: messageLimit)
        return AuditRecord(
            id: id,
            intent: AuditIntent(
                source: source,
                requester: requester,
                clientAddress: clientAddress,
                target: target,
                domainName: domainName,
                domainUUID: domainUUID,
                action: action,
                requestedAt: requestedAt
            ),
            state: state,
            result: result,
            powerState: powerState,
            errorCode: errorCode,
            message: message,
            finishedAt: finishedAt,
            duration: duration
        )
    }
}
