import FenceCore
import Foundation
import Store
import Testing

@testable import Cluster

@Suite("Cluster wire format")
struct ClusterWireTests {
    static let hello = Hello(keyFingerprints: ["b2", "a1"], hostName: "host1")

    @Test("a hello round-trips; the envelope is magic, version, kind and length, big-endian")
    func roundTrip() throws {
        let bytes = ClusterMessage.hello(Self.hello).encoded
        #expect(Array(bytes.prefix(12)) == Array("FGCL".utf8) + [0, 1, 0, 1, 0, 0, 0, UInt8(bytes.count - 12)])
        #expect(try ClusterMessage(decoding: bytes) == .hello(Self.hello))
        #expect(Self.hello.keyFingerprints == ["a1", "b2"])  // sorted, so that equal sets compare equal
        #expect(ClusterMessage.version(of: bytes) == 1)
    }

    @Test("another version, kind, magic or length is refused, naming why")
    func refusals() {
        let valid = ClusterMessage.hello(Self.hello).encoded
        func decode(_ bytes: [UInt8]) -> WireError? {
            do {
                _ = try ClusterMessage(decoding: bytes)
                return nil
            } catch {
                return error
            }
        }
        var version = valid
        version[5] = 2
        #expect(decode(version) == .unsupportedVersion(2))
        #expect(ClusterMessage.version(of: version) == 2)
        var kind = valid
        kind[7] = 99
        #expect(decode(kind) == .unknownKind(99))
        var magic = valid
        magic[0] = 0
        #expect(decode(magic) == .notFencegate)
        #expect(ClusterMessage.version(of: magic) == nil)
        #expect(decode(Array(valid.dropLast())) == .truncated(field: "payload"))
        #expect(decode(valid + [0]) == .trailingBytes(1))
        #expect(decode([]) == .truncated(field: "magic"))
        // A text field longer than its bound is refused before anything is read from it.
        var long = Array(valid.prefix(12))
        long += [0, 0] + [0xFF, 0xFF]
        long[11] = UInt8(long.count - 12)
        #expect(decode(long) == .tooLong(field: "host name", length: 65535, limit: 255))
    }

    @Test("texts are cut to their bound at a character boundary, so that they always decode")
    func boundedTexts() throws {
        let name = String(repeating: "é", count: 200)  // 400 bytes of UTF-8
        let hello = Hello(keyFingerprints: [], hostName: name)
        #expect(hello.hostName.utf8.count == 254)
        #expect(try ClusterMessage(decoding: ClusterMessage.hello(hello).encoded) == .hello(hello))
    }

    @Test("a domain report round-trips; a persistence flag other than 0 or 1 is refused")
    func domainReport() throws {
        let report = DomainReport(domains: [
            .init(uuid: "11111111-1111-4111-8111-111111111111", name: "pcmk1", state: "running", isPersistent: true),
            .init(
                uuid: "22222222-2222-4222-8222-222222222222",
                name: "stopped1",
                state: "shut-off",
                isPersistent: false
            ),
        ])
        var bytes = ClusterMessage.domains(report).encoded
        #expect(try ClusterMessage(decoding: bytes) == .domains(report))
        bytes[bytes.count - 1] = 2
        #expect(throws: WireError.invalid(field: "domain persistence")) { try ClusterMessage(decoding: bytes) }
    }

    @Test("forwarding messages round-trip: claims, requests, both kinds of reply, a confirmation, an operator")
    func forwardingMessages() throws {
        let request = ForwardedRequest(
            serial: 7,
            action: "reboot",
            domainUUID: "11111111-1111-4111-8111-111111111111",
            domainName: "pcmk1",
            target: "pcmk1",
            frontEnd: "multicast",
            requester: "198.18.0.10",
            clientAddress: "198.18.0.10",
            requestID: "r12",
            receivedOn: "host1",
            timeoutMilliseconds: 60_000,
            waitForDomain: false
        )
        let member = CPGMember(nodeID: 2, pid: 4242)
        let messages: [ClusterMessage] = [
            .claim(CallbackClaim(key: [1, 2, 3, 4])), .release(CallbackClaim(key: [9])), .request(request),
            .request(request.withRequester(uuid: "u", name: "pcmk2")),
            .claimRequester(ClaimRequester(claim: CallbackClaim(key: [5]), requesterUUID: "u", requesterName: "pcmk2")),
            .done(serial: 9, fenced: true),
            .silent(member),
            .reply(
                .init(
                    receiver: member,
                    serial: 7,
                    executedOn: "host2",
                    outcome: .success(operationID: -1, state: "running", note: "")
                )
            ),
            .reply(
                .init(
                    receiver: member,
                    serial: 8,
                    executedOn: "host2",
                    outcome: .failure(code: "timed_out", message: "late")
                )
            ),
            .confirmDown(DownConfirmation(hostName: "host3", confirmedBy: "root")),
            .hello(Hello(keyFingerprints: ["a"], hostName: "ops", role: .operator)),
            .domains(DomainReport(domains: [], hypervisorReachable: false)),
            .auditQuery(
                AuditQueryMessage(
                    serial: 3,
                    query: AuditQuery(
                        domain: "pcmk1",
                        result: .timedOut,
                        domainPatterns: ["pcmk*"],
                        since: Date(microsecondsSince1970: 5),
                        limit: 20
                    ),
                    cursor: ClusterAuditCursor(requestedAtMicroseconds: 9, host: "host2", id: 4)
                )
            ),
            .auditQuery(AuditQueryMessage(serial: 4, query: AuditQuery(), cursor: nil)),
            .auditPage(
                AuditPageMessage(
                    receiver: member,
                    serial: 3,
                    hostName: "host1",
                    result: .failure(.init(reason: "disk"))
                )
            ),
            .auditPage(
                AuditPageMessage(
                    receiver: member,
                    serial: 3,
                    hostName: "host1",
                    result: .success([
                        AuditRecord(
                            id: 7,
                            intent: AuditIntent(
                                source: "multicast",
                                requester: "198.18.0.10",
                                clientAddress: nil,
                                target: "pcmk1",
                                domainName: "pcmk1",
                                domainUUID: "u",
                                action: "off",
                                requestedAt: Date(microsecondsSince1970: 1_000_001)
                            ),
                            state: .finished,
                            result: .success,
                            powerState: "off",
                            errorCode: nil,
                            message: "received on host2",
                            finishedAt: Date(microsecondsSince1970: 1_500_000),
                            duration: .microseconds(499_999)
                        )
                    ])
                )
            ),
            .departed(
                DepartedReport(hosts: [
                    .init(
                        name: "host2",
                        confirmedDown: true,
                        domains: [.init(uuid: "u", name: "n", state: "running", isPersistent: true)]
                    ),
                    .init(name: "host4", confirmedDown: false, domains: []),
                ])
            ),
        ]
        for message in messages {
            #expect(try ClusterMessage(decoding: message.encoded) == message)
        }
        // A role or flag out of range is refused.
        var hello = ClusterMessage.hello(Self.hello).encoded
        hello[hello.count - 1] = 7
        #expect(throws: WireError.invalid(field: "role")) { try ClusterMessage(decoding: hello) }
        // A claim key longer than its bound is cut on sending and refused on reading.
        #expect(CallbackClaim(key: Array(repeating: 1, count: 500)).key.count == 128)
    }
}
