import FenceCore
import Foundation
import Testing

@testable import MulticastGateway

@Suite("groups: fence_virtd's permission rules")
struct FenceGroupsTests {
    let groups = FenceGroups([
        .init(
            name: "cluster1",
            requesters: ["198.18.0.11", "198.18.0.12"],
            domains: ["pcmk1", "22222222-2222-4222-8222-222222222222"]
        ),
        .init(name: "cluster2", requesters: ["fd00::13"], domains: ["PCMK3"]),
    ])

    @Test("no entries at all allow everything")
    func empty() {
        #expect(FenceGroups().permits(requester: "198.18.0.99", domain: "anything"))
        #expect(FenceGroups([.init(requesters: [], domains: [])]).permits(requester: "x", domain: "y"))
    }

    @Test(
        "a requester may act on its groups' domains, compared case-insensitively",
        arguments: [
            ("198.18.0.11", "pcmk1", true), ("198.18.0.12", "PCMK1", true), ("198.18.0.11", "pcmk3", false),
            ("198.18.0.99", "pcmk1", false), ("FD00::13", "pcmk3", true), ("fd00::13", "pcmk1", false),
            ("198.18.0.11", "22222222-2222-4222-8222-222222222222", true),
            // Upstream quirk: a group that lists only the UUID denies the name.
            ("198.18.0.11", "pcmk2", false),
        ]
    )
    func permits(requester: String, domain: String, allowed: Bool) {
        #expect(groups.permits(requester: requester, domain: domain) == allowed)
    }

    @Test("a list holds the domains whose name or UUID is in one of the requester's groups")
    func lists() {
        let pcmk2 = DomainInfo(
            name: "pcmk2",
            uuid: "22222222-2222-4222-8222-222222222222",
            state: .running,
            isPersistent: true
        )
        let pcmk1 = DomainInfo(
            name: "pcmk1",
            uuid: "11111111-1111-4111-8111-111111111111",
            state: .running,
            isPersistent: true
        )
        let pcmk3 = DomainInfo(
            name: "pcmk3",
            uuid: "33333333-3333-4333-8333-333333333333",
            state: .running,
            isPersistent: true
        )
        let all = [pcmk1, pcmk2, pcmk3]
        #expect(groups.lists(pcmk1, to: "198.18.0.11", among: all))
        #expect(groups.lists(pcmk2, to: "198.18.0.11", among: all))
        #expect(!groups.lists(pcmk3, to: "198.18.0.11", among: all))
        #expect(groups.lists(pcmk3, to: "fd00::13", among: all))
        #expect(!groups.lists(pcmk1, to: "198.18.0.99", among: all))
    }

    @Test(
        "case is folded for ASCII letters only, as strcasecmp in the C locale",
        arguments: [
            ("web1", "WEB1", true), ("Web1", "wEb1", true), ("café", "CAFÉ", false), ("café", "cafe\u{301}", false),
            ("straße", "STRASSE", false), ("ǅ", "ǆ", false), ("a", "a\u{0}", false),
        ]
    )
    func asciiFolding(left: String, right: String, equal: Bool) {
        #expect(left.equalsIgnoringASCIICase(right) == equal)
    }

    @Test("an entry that differs from a name in ASCII case only stands for it unless another domain has its exact name")
    func entryNamesOneDomain() {
        let web1 = DomainInfo(
            name: "web1",
            uuid: "44444444-4444-4444-8444-444444444441",
            state: .running,
            isPersistent: true
        )
        let upper = DomainInfo(
            name: "WEB1",
            uuid: "44444444-4444-4444-8444-444444444442",
            state: .running,
            isPersistent: true
        )
        let groups = FenceGroups([.init(requesters: ["198.18.0.11"], domains: ["web1"])])
        // Both defined: the entry is web1's, never WEB1's.
        #expect(groups.lists(web1, to: "198.18.0.11", among: [web1, upper]))
        #expect(!groups.lists(upper, to: "198.18.0.11", among: [web1, upper]))
        // Only WEB1 defined: the entry stands for it, as in fence_virtd.
        #expect(groups.lists(upper, to: "198.18.0.11", among: [upper]))
        // An entry that matches both only by folding names neither.
        let mixed = FenceGroups([.init(requesters: ["198.18.0.11"], domains: ["Web1"])])
        #expect(!mixed.lists(web1, to: "198.18.0.11", among: [web1, upper]))
        #expect(!mixed.lists(upper, to: "198.18.0.11", among: [web1, upper]))
        #expect(mixed.lists(web1, to: "198.18.0.11", among: [web1]))
    }
}

@Suite("duplicate suppression")
struct RequestHistoryTests {
    func request(_ operation: FenceXVMOperation, _ domain: String, sequence: UInt32 = 7) -> FenceXVMRequest {
        FenceXVMRequest(
            operation: operation,
            domain: domain,
            address: [198, 18, 0, 11],
            port: 1229,
            sequenceNumber: sequence,
            family: 2
        )
    }

    @Test("a copy is a duplicate while the first runs and within the window after; case does not matter")
    func duplicates() {
        let history = RequestHistory(window: .seconds(10))
        let key = RequestHistory.Key(request(.off, "pcmk1"))
        #expect(history.claim(key))
        #expect(!history.claim(RequestHistory.Key(request(.off, "PCMK1"))))  // arriving together: only one runs
        history.answered(key)
        #expect(!history.claim(key))
        #expect(history.claim(RequestHistory.Key(request(.on, "pcmk1"))))  // another request code
        #expect(history.claim(RequestHistory.Key(request(.off, "pcmk1", sequence: 8))))  // another invocation
    }

    @Test("copies make one call back at a time; a call back that ends unanswered lets a later copy call back")
    func callbacks() {
        let history = RequestHistory(window: .seconds(10))
        let key = RequestHistory.Key(request(.reboot, "pcmk2"))
        #expect(history.beginCallback(key))
        #expect(!history.beginCallback(RequestHistory.Key(request(.reboot, "PCMK2"))))
        history.endCallback(key)  // the client could not prove it holds the key
        #expect(!history.isKnown(key))
        #expect(history.beginCallback(key))
        #expect(history.claim(key))  // now it could
        history.endCallback(key)
        history.answered(key)
        #expect(history.isKnown(key))
        #expect(!history.beginCallback(key))
    }

    @Test("a session that never authenticates holds no claim: the genuine request is not taken for a duplicate")
    func noClaimBeforeAuthentication() {
        let history = RequestHistory(window: .seconds(10))
        let key = RequestHistory.Key(request(.off, "pcmk1"))
        // A replay on a TCP connection stalls in the challenge-response: it takes nothing. The genuine copy
        // calls back, authenticates and claims the key.
        #expect(!history.isKnown(key))
        #expect(history.beginCallback(key))
        #expect(history.claim(key))
        // Only once it ran is the key a duplicate for the replay, should it ever authenticate.
        #expect(!history.claim(key))
    }

    @Test("an answered key expires after the window")
    func expiry() async throws {
        let history = RequestHistory(window: .milliseconds(50))
        let key = RequestHistory.Key(request(.status, "pcmk3"))
        #expect(history.claim(key))
        history.answered(key)
        try await Task.sleep(for: .milliseconds(80))
        #expect(history.claim(key))
    }

    @Test("expired keys are forgotten, in-progress ones kept: the history does not grow with traffic")
    func pruning() async throws {
        // A window long enough that no key expires while 3,000 are added, even on a loaded machine.
        let history = RequestHistory(window: .seconds(3))
        let running = RequestHistory.Key(request(.reboot, "pcmk5", sequence: 1))
        #expect(history.claim(running))
        for sequence in UInt32(2)..<3002 {
            let key = RequestHistory.Key(request(.status, "pcmk5", sequence: sequence))
            #expect(history.claim(key))
            history.answered(key)
        }
        #expect(history.trackedKeys == 3001)
        try await Task.sleep(for: .milliseconds(3200))
        #expect(history.claim(RequestHistory.Key(request(.status, "pcmk5", sequence: 9999))))
        #expect(history.trackedKeys == 2)  // the running claim and the new one
        #expect(!history.claim(running))  // still in progress: still a duplicate
    }

    @Test("of many copies claimed at once from many threads, exactly one wins")
    func concurrentClaims() async {
        let history = RequestHistory()
        let key = RequestHistory.Key(request(.off, "pcmk4"))
        let winners = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<64 { group.addTask { history.claim(key) } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(winners == 1)
    }
}

@Suite("replayed packets: exact copies of a signed request received before")
struct SignatureMemoryTests {
    let key = [UInt8](repeating: 0x5A, count: 4096)

    func signed(_ operation: FenceXVMOperation = .status, sequence: UInt32 = 7) throws -> FenceXVMRequest {
        try FenceXVMRequest(
            operation: operation,
            domain: "pcmk1",
            address: [198, 18, 0, 11],
            port: 1229,
            sequenceNumber: sequence,
            family: 2
        ).signed(hashType: .sha256, key: key)
    }

    @Test("an exact copy is a replay; the same request signed again (a retransmission) is not")
    func replays() throws {
        let memory = SignatureMemory()
        let request = try signed()
        #expect(memory.remember(request))
        #expect(!memory.remember(request))
        #expect(!memory.remember(try FenceXVMRequest(bytes: request.bytes)))
        // fence_xvm's retransmissions and per-interface copies: same request, fresh random bytes.
        #expect(memory.remember(try request.signed(hashType: .sha256, key: key)))
        #expect(memory.remember(try request.signed(hashType: .sha512, key: key)))
        #expect(memory.count == 3)
    }

    @Test("unsigned requests (hash type none) all look alike: never taken for replays, never remembered")
    func unsigned() throws {
        let memory = SignatureMemory()
        let request = try signed().signed(hashType: .none, key: [])
        #expect(memory.remember(request))
        #expect(memory.remember(request))
        #expect(memory.count == 0)
    }

    @Test("memory is bounded: the oldest signature is forgotten first")
    func bounded() throws {
        let memory = SignatureMemory(capacity: 3)
        let requests = try (1...5).map { try signed(sequence: UInt32($0)) }
        for request in requests.prefix(3) { #expect(memory.remember(request)) }
        #expect(!memory.remember(requests[0]))
        #expect(memory.remember(requests[3]))  // pushes out requests[0]
        #expect(memory.count == 3)
        #expect(memory.remember(requests[0]))  // forgotten: taken as new (pushes out requests[1])
        #expect(!memory.remember(requests[2]))
        #expect(!memory.remember(requests[3]))
        #expect(memory.remember(requests[1]))
        #expect(memory.count == 3)
    }
}
