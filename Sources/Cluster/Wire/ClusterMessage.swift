/// A message between Fencegate hosts over CPG.
///
/// Every message is an envelope: the magic `FGCL`, the protocol version (16 bits), the kind (16 bits) and
/// the payload's length (32 bits), all big-endian, then the payload. Sizes are bounded (`maximumSize`, and a
/// limit per field); a message of another protocol version is not decoded (`WireError.unsupportedVersion`),
/// except that its version can be read for the log (`ClusterMessage.version(of:)`).
public enum ClusterMessage: Sendable, Equatable {
    /// A member introduces itself: sent on joining and whenever members join.
    case hello(Hello)
    /// A member's domains: sent after its hello, and after each change its hypervisor reports.
    case domains(DomainReport)
    /// A member claims a fence_xvm call back; the first claim delivered wins.
    case claim(CallbackClaim)
    /// A member found the domain behind a fence_xvm request's sender (sent before its claim).
    case claimRequester(ClaimRequester)
    /// A member gives a claim up (its call back failed): another copy of the request may be answered.
    case release(CallbackClaim)
    /// A request for the member that executes it.
    case request(ForwardedRequest)
    /// The executor's answer.
    case reply(ForwardedReply)
    /// An operator confirms that a host which left is down.
    case confirmDown(DownConfirmation)
    /// The hosts that left, as a member knows them (for members that joined later).
    case departed(DepartedReport)
    /// A member gives up a request of its own at its deadline (`serial`): if it still waits, it never runs.
    case withdraw(serial: UInt64)
    /// The receiving member ran a fence of its own request `serial` itself: whether it fenced (fence races).
    case done(serial: UInt64, fenced: Bool)
    /// A member saw `member` stay silent (no hello) since it joined: every member refuses it at this
    /// message's delivery, if it still has not introduced itself.
    case silent(CPGMember)
    /// A member asks every host for its part of a merged audit page.
    case auditQuery(AuditQueryMessage)
    /// A host's part of a merged audit page.
    case auditPage(AuditPageMessage)

    /// The protocol version this build speaks.
    public static let protocolVersion: UInt16 = 1
    /// The largest message, envelope included (corosync's largest atomic message here is 1,047,552 bytes).
    public static let maximumSize = 1 << 20
    static let magic: [UInt8] = Array("FGCL".utf8)
    static let headerSize = 12

    enum Kind: UInt16 {
        case hello = 1
        case domains = 2
        case claim = 3
        case release = 4
        case request = 5
        case reply = 6
        case confirmDown = 7
        case departed = 8
        case withdraw = 9
        case auditQuery = 10
        case auditPage = 11
        case silent = 12
        case done = 13
        case claimRequester = 14
    }

    /// The bytes on the wire.
    public var encoded: [UInt8] {
        var payload = WireWriter()
        let kind: Kind
        switch self {
        case .hello(let hello):
            kind = .hello
            hello.encode(into: &payload)
        case .domains(let report):
            kind = .domains
            report.encode(into: &payload)
        case .claim(let claim):
            kind = .claim
            claim.encode(into: &payload)
        case .claimRequester(let requester):
            kind = .claimRequester
            requester.encode(into: &payload)
        case .release(let claim):
            kind = .release
            claim.encode(into: &payload)
        case .request(let request):
            kind = .request
            request.encode(into: &payload)
        case .reply(let reply):
            kind = .reply
            reply.encode(into: &payload)
        case .confirmDown(let confirmation):
            kind = .confirmDown
            confirmation.encode(into: &payload)
        case .departed(let report):
            kind = .departed
            report.encode(into: &payload)
        case .withdraw(let serial):
            kind = .withdraw
            payload.write(serial)
        case .done(let serial, let fenced):
            kind = .done
            payload.write(serial)
            payload.write(UInt8(fenced ? 1 : 0))
        case .silent(let member):
            kind = .silent
            payload.write(member)
        case .auditQuery(let query):
            kind = .auditQuery
            query.encode(into: &payload)
        case .auditPage(let page):
            kind = .auditPage
            page.encode(into: &payload)
        }
        var envelope = WireWriter()
        envelope.write(raw: Self.magic)
        envelope.write(Self.protocolVersion)
        envelope.write(kind.rawValue)
        envelope.write(UInt32(payload.bytes.count))
        envelope.write(raw: payload.bytes)
        precondition(envelope.bytes.count <= Self.maximumSize, "a cluster message exceeds its bound")
        return envelope.bytes
    }

    /// The protocol version a message claims, if it is a Fencegate cluster message at all.
    public static func version(of bytes: [UInt8]) -> UInt16? {
        guard bytes.count >= headerSize, Array(bytes.prefix(4)) == magic else { return nil }
        return UInt16(bytes[4]) << 8 | UInt16(bytes[5])
    }

    /// Decodes a message of this protocol version.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        guard bytes.count <= Self.maximumSize else {
            throw .tooLong(field: "message", length: bytes.count, limit: Self.maximumSize)
        }
        var reader = WireReader(bytes)
        guard try reader.raw(4, field: "magic") == Self.magic else { throw .notFencegate }
        let version = try reader.uint16("version")
        guard version == Self.protocolVersion else { throw .unsupportedVersion(version) }
        let kindValue = try reader.uint16("kind")
        let length = Int(try reader.uint32("length"))
        guard length == reader.remaining else {
            throw length > reader.remaining ? .truncated(field: "payload") : .trailingBytes(reader.remaining - length)
        }
        guard let kind = Kind(rawValue: kindValue) else { throw .unknownKind(kindValue) }
        switch kind {
        case .hello: self = .hello(try Hello(decoding: &reader))
        case .domains: self = .domains(try DomainReport(decoding: &reader))
        case .claim: self = .claim(try CallbackClaim(decoding: &reader))
        case .release: self = .release(try CallbackClaim(decoding: &reader))
        case .claimRequester: self = .claimRequester(try ClaimRequester(decoding: &reader))
        case .request: self = .request(try ForwardedRequest(decoding: &reader))
        case .reply: self = .reply(try ForwardedReply(decoding: &reader))
        case .confirmDown: self = .confirmDown(try DownConfirmation(decoding: &reader))
        case .departed: self = .departed(try DepartedReport(decoding: &reader))
        case .withdraw: self = .withdraw(serial: try reader.uint64("serial"))
        case .done:
            let serial = try reader.uint64("serial")
            let fenced = try reader.uint8("fenced")
            guard fenced <= 1 else { throw .invalid(field: "fenced") }
            self = .done(serial: serial, fenced: fenced == 1)
        case .silent:
            self = .silent(try reader.member("member"))
        case .auditQuery: self = .auditQuery(try AuditQueryMessage(decoding: &reader))
        case .auditPage: self = .auditPage(try AuditPageMessage(decoding: &reader))
        }
        try reader.end()
    }
}

/// A member's introduction: who it is and what it must share with the others to fence for them.
public struct Hello: Sendable, Equatable {
    /// The fingerprints of its gateway keys (`fencegate key fingerprint`), sorted, each once: members must
    /// hold the same keys, since any of them may answer a guest's request that another one heard.
    public let keyFingerprints: [String]
    /// The member's host name, for the log and `cluster status`.
    public let hostName: String
    /// What the member is: a host that fences, or an operator's command (`fencegate cluster …`), which
    /// reports no domains and executes nothing.
    public let role: Role

    public enum Role: UInt8, Sendable {
        case host = 0
        case `operator` = 1

        /// `host` or `operator`.
        public var name: String { self == .host ? "host" : "operator" }
    }

    static let textLimit = 255
    static let fingerprintLimit = 64

    public init(keyFingerprints: [String], hostName: String, role: Role = .host) {
        self.keyFingerprints = Array(Set(keyFingerprints.map { truncated($0, to: Self.textLimit) })).sorted()
            .prefix(Self.fingerprintLimit).map { $0 }
        self.hostName = truncated(hostName, to: Self.textLimit)
        self.role = role
    }

    func encode(into writer: inout WireWriter) {
        writer.write(UInt16(keyFingerprints.count))
        for fingerprint in keyFingerprints { writer.write(text: fingerprint) }
        writer.write(text: hostName)
        writer.write(role.rawValue)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.uint16("key fingerprint count"))
        guard count <= Self.fingerprintLimit else {
            throw .tooLong(field: "key fingerprints", length: count, limit: Self.fingerprintLimit)
        }
        var fingerprints: [String] = []
        for _ in 0..<count { fingerprints.append(try reader.text("key fingerprint", limit: Self.textLimit)) }
        keyFingerprints = fingerprints
        hostName = try reader.text("host name", limit: Self.textLimit)
        guard let role = Role(rawValue: try reader.uint8("role")) else { throw .invalid(field: "role") }
        self.role = role
    }
}

/// `text` cut to at most `limit` bytes of UTF-8, at a character boundary.
func truncated(_ text: String, to limit: Int) -> String {
    var result = ""
    var size = 0
    for character in text {
        size += character.utf8.count
        guard size <= limit else { break }
        result.append(character)
    }
    return result
}

/// The domains one member's hypervisor has, as it last listed them.
public struct DomainReport: Sendable, Equatable {
    /// One domain: its UUID, name, libvirt state (`running`, `shut-off`, …) and whether it is persistent.
    public struct Domain: Sendable, Equatable {
        public let uuid: String
        public let name: String
        public let state: String
        public let isPersistent: Bool

        public init(uuid: String, name: String, state: String, isPersistent: Bool) {
            self.uuid = truncated(uuid, to: DomainReport.uuidLimit)
            self.name = truncated(name, to: DomainReport.nameLimit)
            self.state = truncated(state, to: DomainReport.stateLimit)
            self.isPersistent = isPersistent
        }
    }

    public let domains: [Domain]
    /// False if the member's hypervisor could not be listed: `domains` are then the last ones it listed
    /// (none if it never could), and where a domain runs cannot be known for sure.
    public let hypervisorReachable: Bool

    /// The most domains one report holds; a report that would exceed `ClusterMessage.maximumSize` (only
    /// thousands of very long names can) is cut to fit.
    public static let domainLimit = 4096
    static let uuidLimit = 64
    static let nameLimit = 256
    static let stateLimit = 32

    public init(domains: [Domain], hypervisorReachable: Bool = true) {
        var kept: [Domain] = []
        var size = ClusterMessage.headerSize + 3
        for domain in domains.prefix(Self.domainLimit) {
            size += 2 + domain.uuid.utf8.count + 2 + domain.name.utf8.count + 2 + domain.state.utf8.count + 1
            guard size <= ClusterMessage.maximumSize else { break }
            kept.append(domain)
        }
        self.domains = kept
        // A report cut to fit says so: the domains left out may run on this host.
        self.hypervisorReachable = hypervisorReachable && kept.count == domains.count
    }

    /// The report's size on the wire.
    var encodedSize: Int {
        domains.reduce(3) { $0 + 2 + $1.uuid.utf8.count + 2 + $1.name.utf8.count + 2 + $1.state.utf8.count + 1 }
    }

    func encode(into writer: inout WireWriter) {
        writer.write(UInt8(hypervisorReachable ? 1 : 0))
        writer.write(UInt16(domains.count))
        for domain in domains {
            writer.write(text: domain.uuid)
            writer.write(text: domain.name)
            writer.write(text: domain.state)
            writer.write(UInt8(domain.isPersistent ? 1 : 0))
        }
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        let reachable = try reader.uint8("hypervisor reachable")
        guard reachable <= 1 else { throw .invalid(field: "hypervisor reachable") }
        hypervisorReachable = reachable == 1
        let count = Int(try reader.uint16("domain count"))
        guard count <= Self.domainLimit else {
            throw .tooLong(field: "domains", length: count, limit: Self.domainLimit)
        }
        var domains: [Domain] = []
        for _ in 0..<count {
            let uuid = try reader.text("domain uuid", limit: Self.uuidLimit)
            let name = try reader.text("domain name", limit: Self.nameLimit)
            let state = try reader.text("domain state", limit: Self.stateLimit)
            let persistent = try reader.uint8("domain persistence")
            guard persistent <= 1 else { throw .invalid(field: "domain persistence") }
            domains.append(Domain(uuid: uuid, name: name, state: state, isPersistent: persistent == 1))
        }
        self.domains = domains
    }
}
