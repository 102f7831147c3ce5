/// A fence_xvm call back claimed by one member (kind `claim`) or given up (kind `release`): every member
/// that heard a guest's multicast asks; the first claim delivered wins everywhere, so exactly one host calls
/// the guest back. The key is the gateway's duplicate key (request code, sequence number, folded domain).
public struct CallbackClaim: Sendable, Equatable, Hashable {
    public let key: [UInt8]

    static let keyLimit = 128

    public init(key: [UInt8]) {
        self.key = Array(key.prefix(Self.keyLimit))
    }

    func encode(into writer: inout WireWriter) {
        writer.write(UInt16(key.count))
        writer.write(raw: key)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.uint16("claim key length"))
        guard count <= Self.keyLimit else { throw .tooLong(field: "claim key", length: count, limit: Self.keyLimit) }
        key = try reader.raw(count, field: "claim key")
    }
}

/// A request a member received, for the member that executes it (kind `request`): the executor is decided
/// at delivery, from the domain reports every member holds alike. The receiving member resolved and
/// authorized the domain already; the executor acts on its UUID.
public struct ForwardedRequest: Sendable, Equatable {
    /// The receiving member's number for the request (its replies name it).
    public let serial: UInt64
    /// `FenceAction`'s raw value.
    public let action: String
    /// The resolved domain (canonical UUID) and its name.
    public let domainUUID: String
    public let domainName: String
    /// How the requester named the domain.
    public let target: String
    /// The original request's front end, requester, client address and request id, for the executor's audit.
    public let frontEnd: String
    public let requester: String
    public let clientAddress: String
    public let requestID: String
    /// The receiving host's name.
    public let receivedOn: String
    /// The time left for the request when it was sent.
    public let timeoutMilliseconds: UInt32
    /// False: fail at once if the domain is busy.
    public let waitForDomain: Bool
    /// The domain that sent the request (fence races), as the receiving host found it: its UUID and name;
    /// empty if unknown.
    public let requesterUUID: String
    public let requesterName: String
    /// The receiving host's fence-race window (0: arbitration off).
    public let raceWindowMilliseconds: UInt32
    /// A fence_xvm request's duplicate key (its call back's claim), empty otherwise: the host where the
    /// guest runs may have named the requester with its claim.
    public let claimKey: [UInt8]

    static let textLimit = 255

    public init(
        serial: UInt64,
        action: String,
        domainUUID: String,
        domainName: String,
        target: String,
        frontEnd: String,
        requester: String,
        clientAddress: String,
        requestID: String,
        receivedOn: String,
        timeoutMilliseconds: UInt32,
        waitForDomain: Bool,
        requesterUUID: String = "",
        requesterName: String = "",
        raceWindowMilliseconds: UInt32 = 0,
        claimKey: [UInt8] = []
    ) {
        self.claimKey = Array(claimKey.prefix(CallbackClaim.keyLimit))
        self.requesterUUID = truncated(requesterUUID, to: DomainReport.uuidLimit)
        self.requesterName = truncated(requesterName, to: DomainReport.nameLimit)
        self.raceWindowMilliseconds = raceWindowMilliseconds
        self.serial = serial
        self.action = truncated(action, to: Self.textLimit)
        self.domainUUID = truncated(domainUUID, to: DomainReport.uuidLimit)
        self.domainName = truncated(domainName, to: DomainReport.nameLimit)
        self.target = truncated(target, to: DomainReport.nameLimit)
        self.frontEnd = truncated(frontEnd, to: Self.textLimit)
        self.requester = truncated(requester, to: Self.textLimit)
        self.clientAddress = truncated(clientAddress, to: Self.textLimit)
        self.requestID = truncated(requestID, to: Self.textLimit)
        self.receivedOn = truncated(receivedOn, to: Hello.textLimit)
        self.timeoutMilliseconds = timeoutMilliseconds
        self.waitForDomain = waitForDomain
    }

    func encode(into writer: inout WireWriter) {
        writer.write(serial)
        for text in [action, domainUUID, domainName, target, frontEnd, requester, clientAddress, requestID, receivedOn]
        {
            writer.write(text: text)
        }
        writer.write(timeoutMilliseconds)
        writer.write(UInt8(waitForDomain ? 1 : 0))
        writer.write(text: requesterUUID)
        writer.write(text: requesterName)
        writer.write(raceWindowMilliseconds)
        CallbackClaim(key: claimKey).encode(into: &writer)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        serial = try reader.uint64("serial")
        action = try reader.text("action", limit: Self.textLimit)
        domainUUID = try reader.text("domain uuid", limit: DomainReport.uuidLimit)
        domainName = try reader.text("domain name", limit: DomainReport.nameLimit)
        target = try reader.text("target", limit: DomainReport.nameLimit)
        frontEnd = try reader.text("front end", limit: Self.textLimit)
        requester = try reader.text("requester", limit: Self.textLimit)
        clientAddress = try reader.text("client address", limit: Self.textLimit)
        requestID = try reader.text("request id", limit: Self.textLimit)
        receivedOn = try reader.text("received on", limit: Hello.textLimit)
        timeoutMilliseconds = try reader.uint32("timeout")
        let wait = try reader.uint8("wait for domain")
        guard wait <= 1 else { throw .invalid(field: "wait for domain") }
        waitForDomain = wait == 1
        requesterUUID = try reader.text("requester uuid", limit: DomainReport.uuidLimit)
        requesterName = try reader.text("requester name", limit: DomainReport.nameLimit)
        raceWindowMilliseconds = try reader.uint32("race window")
        claimKey = try CallbackClaim(decoding: &reader).key
    }
}

/// The executor's answer to a forwarded request (kind `reply`), for the member that received it.
public struct ForwardedReply: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Done: the executor's audit row, the domain's state afterwards, a remark.
        case success(operationID: Int64, state: String, note: String)
        /// Not done, or not known to be done (`FenceError.code`, its description).
        case failure(code: String, message: String)
    }

    /// The member the request came from, and its number for it.
    public let receiver: CPGMember
    public let serial: UInt64
    /// The executing host's name.
    public let executedOn: String
    public let outcome: Outcome

    static let messageLimit = 1024

    public init(receiver: CPGMember, serial: UInt64, executedOn: String, outcome: Outcome) {
        self.receiver = receiver
        self.serial = serial
        self.executedOn = truncated(executedOn, to: Hello.textLimit)
        switch outcome {
        case .success(let operation, let state, let note):
            self.outcome = .success(
                operationID: operation,
                state: truncated(state, to: DomainReport.stateLimit),
                note: truncated(note, to: Self.messageLimit)
            )
        case .failure(let code, let message):
            self.outcome = .failure(
                code: truncated(code, to: Hello.textLimit),
                message: truncated(message, to: Self.messageLimit)
            )
        }
    }

    func encode(into writer: inout WireWriter) {
        writer.write(receiver)
        writer.write(serial)
        writer.write(text: executedOn)
        switch outcome {
        case .success(let operation, let state, let note):
            writer.write(UInt8(0))
            writer.write(UInt64(bitPattern: operation))
            writer.write(text: state)
            writer.write(text: note)
        case .failure(let code, let message):
            writer.write(UInt8(1))
            writer.write(text: code)
            writer.write(text: message)
        }
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        receiver = try reader.member("receiver")
        serial = try reader.uint64("serial")
        executedOn = try reader.text("executed on", limit: Hello.textLimit)
        switch try reader.uint8("outcome") {
        case 0:
            outcome = .success(
                operationID: Int64(bitPattern: try reader.uint64("operation id")),
                state: try reader.text("state", limit: DomainReport.stateLimit),
                note: try reader.text("note", limit: Self.messageLimit)
            )
        case 1:
            outcome = .failure(
                code: try reader.text("error code", limit: Hello.textLimit),
                message: try reader.text("message", limit: Self.messageLimit)
            )
        default:
            throw .invalid(field: "outcome")
        }
    }
}

/// An operator's statement that a host which left the cluster is down (powered off, fenced by the host
/// cluster): its domains then count as off, while this partition is quorate, until it rejoins (kind
/// `confirmDown`).
public struct DownConfirmation: Sendable, Equatable {
    public let hostName: String
    /// Who said so (the operator's user), for the log.
    public let confirmedBy: String

    public init(hostName: String, confirmedBy: String) {
        self.hostName = truncated(hostName, to: Hello.textLimit)
        self.confirmedBy = truncated(confirmedBy, to: Hello.textLimit)
    }

    func encode(into writer: inout WireWriter) {
        writer.write(text: hostName)
        writer.write(text: confirmedBy)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        hostName = try reader.text("host name", limit: Hello.textLimit)
        confirmedBy = try reader.text("confirmed by", limit: Hello.textLimit)
    }
}

/// The hosts that left the cluster as a member knows them (kind `departed`), sent before its domains, so
/// that a member which joined later knows them too: their domains are not fenced by guess on any member.
public struct DepartedReport: Sendable, Equatable {
    public struct Host: Sendable, Equatable {
        public let name: String
        public let confirmedDown: Bool
        /// Its domains as it reported them; nil if unknown (it left before reporting them).
        public let domains: [DomainReport.Domain]?

        public init(name: String, confirmedDown: Bool, domains: [DomainReport.Domain]?) {
            self.name = truncated(name, to: Hello.textLimit)
            self.confirmedDown = confirmedDown
            self.domains = domains
        }
    }

    public let hosts: [Host]

    /// The most hosts one report names; a report that would exceed `ClusterMessage.maximumSize` keeps the
    /// names and drops the domains of the hosts that do not fit.
    static let hostLimit = ClusterLedger.departedLimit

    public init(hosts: [Host]) {
        var kept: [Host] = []
        var size = ClusterMessage.headerSize + 2
        for var host in hosts.prefix(Self.hostLimit) {
            if let domains = host.domains, DomainReport(domains: domains).domains.count != domains.count {
                host = Host(name: host.name, confirmedDown: host.confirmedDown, domains: nil)
            }
            let domainsSize = DomainReport(domains: host.domains ?? []).encodedSize
            size += 2 + host.name.utf8.count + 2
            if size + domainsSize <= ClusterMessage.maximumSize - 4096 {
                size += domainsSize
                kept.append(host)
            } else {
                // What does not fit is sent as unknown: never as "had no domains".
                size += DomainReport(domains: []).encodedSize
                kept.append(Host(name: host.name, confirmedDown: host.confirmedDown, domains: nil))
            }
        }
        self.hosts = kept
    }

    func encode(into writer: inout WireWriter) {
        writer.write(UInt16(hosts.count))
        for host in hosts {
            writer.write(text: host.name)
            writer.write(UInt8(host.confirmedDown ? 1 : 0))
            writer.write(UInt8(host.domains == nil ? 0 : 1))
            DomainReport(domains: host.domains ?? []).encode(into: &writer)
        }
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.uint16("departed host count"))
        guard count <= Self.hostLimit else {
            throw .tooLong(field: "departed hosts", length: count, limit: Self.hostLimit)
        }
        var hosts: [Host] = []
        for _ in 0..<count {
            let name = try reader.text("departed host name", limit: Hello.textLimit)
            let confirmed = try reader.uint8("confirmed down")
            guard confirmed <= 1 else { throw .invalid(field: "confirmed down") }
            let known = try reader.uint8("domains known")
            guard known <= 1 else { throw .invalid(field: "domains known") }
            let domains = try DomainReport(decoding: &reader)
            guard known == 1 || domains.domains.isEmpty else { throw .invalid(field: "domains known") }
            guard domains.hypervisorReachable else { throw .invalid(field: "departed report") }
            hosts.append(Host(name: name, confirmedDown: confirmed == 1, domains: known == 1 ? domains.domains : nil))
        }
        self.hosts = hosts
    }
}

/// The domain a host found behind a fence_xvm request's sender (kind `claimRequester`), sent just before its
/// claim: the host where the guest runs knows its address, while another host may win the call back.
public struct ClaimRequester: Sendable, Equatable {
    public let claim: CallbackClaim
    public let requesterUUID: String
    public let requesterName: String

    public init(claim: CallbackClaim, requesterUUID: String, requesterName: String) {
        self.claim = claim
        self.requesterUUID = truncated(requesterUUID, to: DomainReport.uuidLimit)
        self.requesterName = truncated(requesterName, to: DomainReport.nameLimit)
    }

    func encode(into writer: inout WireWriter) {
        claim.encode(into: &writer)
        writer.write(text: requesterUUID)
        writer.write(text: requesterName)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        claim = try CallbackClaim(decoding: &reader)
        requesterUUID = try reader.text("requester uuid", limit: DomainReport.uuidLimit)
        requesterName = try reader.text("requester name", limit: DomainReport.nameLimit)
    }
}

extension ForwardedRequest {
    /// The same request, from the domain with `uuid` and `name`.
    func withRequester(uuid: String, name: String) -> ForwardedRequest {
        ForwardedRequest(
            serial: serial,
            action: action,
            domainUUID: domainUUID,
            domainName: domainName,
            target: target,
            frontEnd: frontEnd,
            requester: requester,
            clientAddress: clientAddress,
            requestID: requestID,
            receivedOn: receivedOn,
            timeoutMilliseconds: timeoutMilliseconds,
            waitForDomain: waitForDomain,
            requesterUUID: uuid,
            requesterName: name,
            raceWindowMilliseconds: raceWindowMilliseconds,
            claimKey: claimKey
        )
    }
}
