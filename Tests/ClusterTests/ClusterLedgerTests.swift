import FenceCore
import Testing

@testable import Cluster

/// The ledger every member keeps: fed the same deliveries, members decide alike where each request runs.
@Suite("Cluster ledger: decisions at delivery")
struct ClusterLedgerTests {
    static let (a, b, c) = (CPGMember(nodeID: 1, pid: 10), CPGMember(nodeID: 2, pid: 20), CPGMember(nodeID: 3, pid: 30))
    static let x = "11111111-1111-4111-8111-111111111111"
    static let y = "22222222-2222-4222-8222-222222222222"

    static func hello(_ host: String, role: Hello.Role = .host) -> Hello {
        Hello(keyFingerprints: ["k"], hostName: host, role: role)
    }

    static func domain(_ uuid: String, _ name: String, _ state: String) -> DomainReport.Domain {
        .init(uuid: uuid, name: name, state: state, isPersistent: true)
    }

    /// An off of `uuid`; with `requester`, from that domain (named `node-` and its UUID's first character),
    /// with a 60 s fence-race window.
    static func request(
        _ serial: UInt64,
        _ uuid: String,
        requester: String? = nil,
        claimKey: [UInt8] = []
    ) -> ForwardedRequest {
        ForwardedRequest(
            serial: serial,
            action: "off",
            domainUUID: uuid,
            domainName: "d",
            target: "d",
            frontEnd: "http",
            requester: "ops",
            clientAddress: "",
            requestID: "r1",
            receivedOn: "host1",
            timeoutMilliseconds: 1000,
            waitForDomain: true,
            requesterUUID: requester ?? "",
            requesterName: requester.map { $0.isEmpty ? "" : "node-\($0.prefix(1))" } ?? "",
            raceWindowMilliseconds: requester == nil ? 0 : 60_000,
            claimKey: claimKey
        )
    }

    /// A delivery, as CPG hands it to every member.
    enum Delivery {
        case membership(members: [CPGMember], left: [CPGMember], joined: [CPGMember])
        case hello(CPGMember, Hello)
        case report(CPGMember, DomainReport)
        case request(CPGMember, ForwardedRequest)
    }

    /// Applies `deliveries` to `ledger` (whose local member is `ledger.local`); returns the decisions made.
    static func apply(_ deliveries: [Delivery], to ledger: inout ClusterLedger) -> [ClusterLedger.Decision] {
        var decisions: [ClusterLedger.Decision] = []
        for delivery in deliveries {
            switch delivery {
            case .membership(let members, let left, let joined):
                decisions += ledger.changeMembership(members: members, left: left, joined: joined)
            case .hello(let member, let hello):
                decisions += ledger.introduce(member, hello).1
            case .report(let member, let report):
                decisions += ledger.report(report, from: member)
            case .request(let member, let request):
                decisions += ledger.deliver(request, from: member)
            }
        }
        return decisions
    }

    static func ledger(_ local: CPGMember, _ host: String) -> ClusterLedger {
        var ledger = ClusterLedger(localHostName: host, localRole: .host)
        ledger.local = local
        return ledger
    }

    /// host1 (a) runs x; host2 (b) has x defined and off, and runs y.
    static let twoHosts: [Delivery] = [
        .membership(members: [a, b], left: [], joined: [a, b]),
        .hello(a, hello("host1")), .hello(b, hello("host2")),
        .report(a, DomainReport(domains: [domain(x, "x", "running")])),
        .report(b, DomainReport(domains: [domain(x, "x", "shut-off"), domain(y, "y", "running")])),
    ]

    @Test("the host where a domain runs executes it, else the first where it is defined; alike on every member")
    func placement() {
        var first = Self.ledger(Self.a, "host1")
        var second = Self.ledger(Self.b, "host2")
        let requests: [Delivery] = [
            .request(Self.a, Self.request(1, Self.x)), .request(Self.b, Self.request(2, Self.y)),
            .request(Self.a, Self.request(3, "33333333-3333-4333-8333-333333333333")),
        ]
        let decided = Self.apply(Self.twoHosts + requests, to: &first)
        #expect(decided == Self.apply(Self.twoHosts + requests, to: &second))
        #expect(
            decided.map(\.placement) == [
                .member(Self.a, host: "host1"), .member(Self.b, host: "host2"), .notFound,
            ]
        )
        // x stops on host1: it is defined on both, and the first host by node id executes.
        var stopped = first
        _ = stopped.report(DomainReport(domains: [Self.domain(Self.x, "x", "shut-off")]), from: Self.a)
        #expect(stopped.placement(ofDomain: Self.x) == .member(Self.a, host: "host1"))
    }

    @Test("a newcomer: every report is forgotten and requests wait until all reported again, then alike")
    func newcomer() {
        var first = Self.ledger(Self.a, "host1")
        var second = Self.ledger(Self.b, "host2")
        _ = Self.apply(Self.twoHosts, to: &first)
        _ = Self.apply(Self.twoHosts, to: &second)
        var third = Self.ledger(Self.c, "host3")  // saw nothing before its join
        let afterJoin: [Delivery] = [
            .membership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.c]),
            .request(Self.a, Self.request(1, Self.x)),
            .hello(Self.c, Self.hello("host3")), .hello(Self.a, Self.hello("host1")),
            .hello(Self.b, Self.hello("host2")),
            .report(Self.c, DomainReport(domains: [])),
            .report(Self.a, DomainReport(domains: [Self.domain(Self.x, "x", "running")])),
        ]
        let beforeLast = [first, second, third].map { ledger in
            var ledger = ledger
            return Self.apply(afterJoin, to: &ledger)
        }
        #expect(beforeLast.allSatisfy { $0.isEmpty }, "parked while host2 has not reported again")
        let last: [Delivery] = [
            .report(Self.b, DomainReport(domains: [Self.domain(Self.x, "x", "shut-off")]))
        ]
        let decisions = [
            Self.apply(afterJoin + last, to: &first), Self.apply(afterJoin + last, to: &second),
            Self.apply(afterJoin + last, to: &third),
        ]
        #expect(decisions.allSatisfy { $0.map(\.placement) == [.member(Self.a, host: "host1")] }, "\(decisions)")
    }

    @Test("a host that left: its domains are not off until it is confirmed down; no start elsewhere by guess")
    func departedHost() {
        var ledger = Self.ledger(Self.a, "host1")
        // y runs on host2 and is also defined (off) on host1.
        _ = Self.apply(
            [
                .membership(members: [Self.a, Self.b], left: [], joined: [Self.a, Self.b]),
                .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
                .report(Self.a, DomainReport(domains: [Self.domain(Self.y, "y", "shut-off")])),
                .report(
                    Self.b,
                    DomainReport(domains: [Self.domain(Self.y, "y", "running"), Self.domain(Self.x, "x", "running")])
                ),
                .membership(members: [Self.a], left: [Self.b], joined: []),
            ],
            to: &ledger
        )
        guard case .unavailable(let reason) = ledger.placement(ofDomain: Self.y) else {
            Issue.record("y must not be placed: \(ledger.placement(ofDomain: Self.y))")
            return
        }
        #expect(reason.contains("host2 left the cluster and is not confirmed down"))
        let memberConfirmed = ledger.confirmDown("host1")
        #expect(!memberConfirmed, "a member cannot be confirmed down")
        let departedConfirmed = ledger.confirmDown("host2")
        #expect(departedConfirmed)
        #expect(ledger.placement(ofDomain: Self.x) == .confirmedDown(host: "host2"))
        #expect(ledger.placement(ofDomain: Self.y) == .member(Self.a, host: "host1"))
        // host2 comes back: no longer confirmed down; a host like any other once it reported.
        _ = Self.apply(
            [
                .membership(members: [Self.a, Self.b], left: [], joined: [Self.b]),
                .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
            ],
            to: &ledger
        )
        #expect(ledger.confirmedDown.isEmpty && ledger.departed.keys.sorted() == ["host2"])
        _ = ledger.report(DomainReport(domains: []), from: Self.b)
        #expect(ledger.departed.isEmpty)
    }

    @Test("a host whose hypervisor cannot be listed: only domains running elsewhere are placed")
    func unreachableHypervisor() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(
            Self.twoHosts + [
                .report(Self.b, DomainReport(domains: [], hypervisorReachable: false)),
                .report(
                    Self.a,
                    DomainReport(domains: [Self.domain(Self.x, "x", "shut-off"), Self.domain(Self.y, "y", "running")])
                ),
            ],
            to: &ledger
        )
        #expect(ledger.placement(ofDomain: Self.y) == .member(Self.a, host: "host1"))
        guard case .unavailable(let reason) = ledger.placement(ofDomain: Self.x) else {
            Issue.record("x may run on host2: \(ledger.placement(ofDomain: Self.x))")
            return
        }
        #expect(reason.contains("host2 cannot be listed"))
    }

    @Test("requests from members not accepted are ignored; a call back claim: first wins, release and leave free it")
    func trustAndClaims() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(Self.twoHosts, to: &ledger)
        _ = Self.apply(
            [
                .membership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.c]),
                .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
                .report(Self.a, DomainReport(domains: [Self.domain(Self.x, "x", "running")])),
                .report(Self.b, DomainReport(domains: [])),
            ],
            to: &ledger
        )
        _ = ledger.introduce(Self.c, Hello(keyFingerprints: ["other"], hostName: "host3", role: .operator))
        let fromRefused = ledger.deliver(Self.request(1, Self.x), from: Self.c)
        let fromAccepted = ledger.deliver(Self.request(2, Self.x), from: Self.b)
        #expect(fromRefused.isEmpty)
        #expect(fromAccepted.map(\.placement) == [.member(Self.a, host: "host1")])

        let claim = CallbackClaim(key: [1, 2, 3])
        let now = ContinuousClock.now
        var outcomes: [Bool] = []
        outcomes.append(ledger.claim(claim, by: Self.c, at: now))  // a refused member claims nothing
        outcomes.append(ledger.claim(claim, by: Self.b, at: now))
        outcomes.append(ledger.claim(claim, by: Self.a, at: now))
        ledger.release(claim, by: Self.a)  // not the holder: no effect
        outcomes.append(ledger.claim(claim, by: Self.a, at: now))
        ledger.release(claim, by: Self.b)
        outcomes.append(ledger.claim(claim, by: Self.a, at: now))
        outcomes.append(ledger.claim(claim, by: Self.b, at: now + ClusterLedger.claimWindow))  // expired
        _ = ledger.changeMembership(members: [Self.a, Self.c], left: [Self.b], joined: [])  // b's claim goes
        outcomes.append(ledger.claim(claim, by: Self.a, at: now + ClusterLedger.claimWindow))
        #expect(outcomes == [false, true, false, false, true, true, true])
    }

    @Test("a member that joins later learns the hosts that left from the others' reports, before deciding")
    func departedKnownToNewcomers() {
        var old = Self.ledger(Self.a, "host1")
        _ = Self.apply(Self.twoHosts + [.membership(members: [Self.a], left: [Self.b], joined: [])], to: &old)
        let confirmed = old.confirmDown("host2")
        #expect(confirmed)
        var newcomer = Self.ledger(Self.c, "host3")
        let join: [Delivery] = [
            .membership(members: [Self.a, Self.c], left: [], joined: [Self.c]),
            .hello(Self.a, Self.hello("host1")), .hello(Self.c, Self.hello("host3")),
        ]
        _ = Self.apply(join, to: &old)
        _ = Self.apply(join, to: &newcomer)
        let report = old.departedReport
        old.merge(report, from: Self.a)  // its own: nothing changes
        newcomer.merge(report, from: Self.a)
        let reports: [Delivery] = [
            .report(Self.a, DomainReport(domains: [])), .report(Self.c, DomainReport(domains: [])),
        ]
        _ = Self.apply(reports, to: &old)
        _ = Self.apply(reports, to: &newcomer)
        #expect(newcomer.placement(ofDomain: Self.y) == .confirmedDown(host: "host2"))
        #expect(old.placement(ofDomain: Self.y) == newcomer.placement(ofDomain: Self.y))
        #expect(newcomer.departed.keys.sorted() == ["host2"] && newcomer.confirmedDown == ["host2"])
    }

    @Test(
        "a newcomer that hears a host's report of departed hosts before its own hello keeps it for when it accepts that host"
    )
    func departedReportBeforeOwnHello() {
        var old = Self.ledger(Self.a, "host1")
        _ = Self.apply(Self.twoHosts + [.membership(members: [Self.a], left: [Self.b], joined: [])], to: &old)
        var newcomer = Self.ledger(Self.c, "host3")
        let join: [Delivery] = [.membership(members: [Self.a, Self.c], left: [], joined: [Self.c])]
        _ = Self.apply(join, to: &old)
        _ = Self.apply(join, to: &newcomer)
        // host1 announces itself (hello, departed hosts, domains); host3's own hello is delivered between its
        // report of departed hosts and its domains: until then host3 cannot judge host1's keys.
        let report = old.departedReport
        #expect(report.hosts.map(\.name) == ["host2"])
        _ = Self.apply([.hello(Self.a, Self.hello("host1"))], to: &old)
        _ = Self.apply([.hello(Self.a, Self.hello("host1"))], to: &newcomer)
        old.merge(report, from: Self.a)
        newcomer.merge(report, from: Self.a)
        #expect(newcomer.departed.isEmpty)
        let rest: [Delivery] = [
            .hello(Self.c, Self.hello("host3")),
            .report(Self.a, DomainReport(domains: [])), .report(Self.c, DomainReport(domains: [])),
        ]
        _ = Self.apply(rest, to: &old)
        _ = Self.apply(rest, to: &newcomer)
        #expect(newcomer.unsettledReason == nil)
        #expect(newcomer.departed.keys.sorted() == ["host2"])
        // y ran on host2, which left and is not confirmed down: nowhere to act, on both.
        #expect(old.placement(ofDomain: Self.y) == newcomer.placement(ofDomain: Self.y))
        #expect(old.departed == newcomer.departed && old.confirmedDown == newcomer.confirmedDown)
        #expect(old.unknownDeparted == newcomer.unknownDeparted && newcomer.heldDepartedReports.isEmpty)
    }

    /// Applies `deliveries` to each ledger; the decisions each made.
    static func applyToAll(_ deliveries: [Delivery], _ ledgers: inout [ClusterLedger]) -> [[ClusterLedger.Decision]] {
        ledgers.indices.map { Self.apply(deliveries, to: &ledgers[$0]) }
    }

    @Test("a report sent before a join and delivered after it counts nowhere: old members and newcomer settle alike")
    func reportAcrossJoin() {
        var ledgers = [Self.ledger(Self.a, "host1"), Self.ledger(Self.b, "host2")]
        _ = Self.applyToAll(Self.twoHosts, &ledgers)
        ledgers.append(Self.ledger(Self.c, "host3"))
        let decided = Self.applyToAll(
            [
                .membership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.c]),
                // host2's report from before the join, delivered after it.
                .report(Self.b, DomainReport(domains: [Self.domain(Self.x, "x", "running")])),
                .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
                .hello(Self.c, Self.hello("host3")),
                .report(Self.a, DomainReport(domains: [])),
                .report(Self.c, DomainReport(domains: [Self.domain(Self.x, "x", "shut-off")])),
                .request(Self.a, Self.request(1, Self.x)),
                .report(Self.b, DomainReport(domains: [Self.domain(Self.x, "x", "shut-off")])),
            ],
            &ledgers
        )
        // Parked everywhere until host2 reported again; then placed alike: x is defined on host2 and host3,
        // host2 comes first.
        #expect(decided.allSatisfy { $0.map(\.placement) == [.member(Self.b, host: "host2")] }, "\(decided)")
    }

    @Test("keys reloaded on one host: it and the others refuse each other at the same deliveries; nobody guesses")
    func keyReload() {
        var ledgers = [Self.ledger(Self.a, "host1"), Self.ledger(Self.b, "host2")]
        _ = Self.applyToAll(Self.twoHosts, &ledgers)
        let reloaded = Hello(keyFingerprints: ["new"], hostName: "host1")
        let afterReload = Self.applyToAll([.hello(Self.a, reloaded)], &ledgers)
        #expect(afterReload.allSatisfy { $0.isEmpty })
        guard case .refused = ledgers[0].members[Self.b], case .refused = ledgers[1].members[Self.a] else {
            Issue.record("both sides refuse: \(ledgers[0].members) \(ledgers[1].members)")
            return
        }
        // x runs on host1 and is defined on host2: host2 cannot see host1, and does not start x itself.
        let decided = Self.applyToAll([.request(Self.b, Self.request(1, Self.x))], &ledgers)
        #expect(decided[0].isEmpty, "host1 ignores a refused member's request")
        guard case .unavailable(let reason) = decided[1].first?.placement else {
            Issue.record("host2 must not place x: \(decided[1])")
            return
        }
        #expect(reason.contains("member host1 is refused"))
    }

    @Test("a host that leaves before it reported since the last join: its domains are unknown, alike everywhere")
    func flappingHost() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(
            Self.twoHosts + [
                .membership(members: [Self.a], left: [Self.b], joined: []),
                .membership(members: [Self.a, Self.b], left: [], joined: [Self.b]),
                .hello(Self.b, Self.hello("host2")),
                .membership(members: [Self.a], left: [Self.b], joined: []),
                .hello(Self.a, Self.hello("host1")),
                .report(Self.a, DomainReport(domains: [Self.domain(Self.y, "y", "shut-off")])),
            ],
            to: &ledger
        )
        #expect(ledger.unknownDeparted == ["host2"], "\(ledger.departed)")
        guard case .unavailable(let reason) = ledger.placement(ofDomain: Self.y) else {
            Issue.record("y ran on host2, which left: \(ledger.placement(ofDomain: Self.y))")
            return
        }
        #expect(reason.contains("left the cluster before it reported its domains"))
    }

    @Test("a domain on on two hosts (a live migration) is placed nowhere")
    func migration() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(
            Self.twoHosts + [.report(Self.b, DomainReport(domains: [Self.domain(Self.x, "x", "paused")]))],
            to: &ledger
        )
        guard case .unavailable(let reason) = ledger.placement(ofDomain: Self.x) else {
            Issue.record("\(ledger.placement(ofDomain: Self.x))")
            return
        }
        #expect(reason.contains("runs on hosts host1 and host2"))
    }

    @Test("a request waiting at its deadline is withdrawn alike; one still waiting at a join is refused alike")
    func withdrawAndJoin() {
        var ledgers = [Self.ledger(Self.a, "host1"), Self.ledger(Self.b, "host2")]
        _ = Self.applyToAll(Self.twoHosts, &ledgers)
        // host3 joins and never says a word: requests wait.
        _ = Self.applyToAll(
            [
                .membership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.c]),
                .request(Self.a, Self.request(1, Self.x)), .request(Self.a, Self.request(2, Self.y)),
            ],
            &ledgers
        )
        #expect(ledgers.allSatisfy { $0.parked.count == 2 })
        var withdrawn: [Bool] = []
        for index in ledgers.indices { withdrawn.append(ledgers[index].withdraw(serial: 1, from: Self.a)) }
        #expect(withdrawn == [true, true])
        var again: [Bool] = []
        for index in ledgers.indices { again.append(ledgers[index].withdraw(serial: 1, from: Self.a)) }
        #expect(again == [false, false], "withdrawn once")
        // Another member joins: the request still waiting is refused everywhere (the newcomer never saw it).
        let decided = Self.applyToAll(
            [
                .membership(
                    members: [Self.a, Self.b, Self.c, CPGMember(nodeID: 4, pid: 40)],
                    left: [],
                    joined: [CPGMember(nodeID: 4, pid: 40)]
                )
            ],
            &ledgers
        )
        for decisions in decided {
            guard decisions.count == 1, case .unavailable = decisions[0].placement else {
                Issue.record("\(decisions)")
                return
            }
        }
    }

    @Test("an unreadable introduction refuses the member; a refused host makes what it may run unavailable")
    func unreadableIntroduction() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(Self.twoHosts, to: &ledger)
        _ = ledger.changeMembership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.c])
        let (changes, _) = ledger.refuse(Self.c, reason: "its message cannot be read")
        #expect(changes.map(\.member) == [Self.c])
        _ = Self.apply(
            [
                .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
                .report(Self.a, DomainReport(domains: [Self.domain(Self.y, "y", "shut-off")])),
                .report(Self.b, DomainReport(domains: [Self.domain(Self.x, "x", "running")])),
            ],
            to: &ledger
        )
        #expect(ledger.unsettledReason == nil)
        #expect(ledger.placement(ofDomain: Self.x) == .member(Self.b, host: "host2"), "running on an accepted host")
        guard case .unavailable = ledger.placement(ofDomain: Self.y) else {
            Issue.record("y may run on the refused member: \(ledger.placement(ofDomain: Self.y))")
            return
        }
        // A later unreadable message from an introduced member does not refuse it.
        #expect(ledger.refuse(Self.b, reason: "garbage").0.isEmpty)
    }

    @Test("a refused host that leaves: its domains stay unknown until it is confirmed down")
    func refusedHostLeaves() {
        var ledger = Self.ledger(Self.a, "host1")
        _ = Self.apply(Self.twoHosts, to: &ledger)
        _ = ledger.introduce(Self.b, Hello(keyFingerprints: ["other"], hostName: "host2"))
        _ = ledger.changeMembership(members: [Self.a], left: [Self.b], joined: [])
        #expect(ledger.unknownDeparted == ["host2"])
        guard case .unavailable = ledger.placement(ofDomain: Self.y) else {
            Issue.record("\(ledger.placement(ofDomain: Self.y))")
            return
        }
        let confirmed = ledger.confirmDown("host2")
        #expect(confirmed)
        #expect(ledger.placement(ofDomain: Self.x) == .member(Self.a, host: "host1"))
        #expect(ledger.reliesOnConfirmation(Self.x), "placed only because host2 was confirmed down: needs quorum")
    }

    @Test("a report of departed hosts sent before a host came back does not confirm it down again")
    func staleDepartedReport() {
        var ledgers = [Self.ledger(Self.a, "host1"), Self.ledger(Self.c, "host3")]
        let start: [Delivery] = [
            .membership(members: [Self.a, Self.b, Self.c], left: [], joined: [Self.a, Self.b, Self.c]),
            .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
            .hello(Self.c, Self.hello("host3")),
            .report(Self.a, DomainReport(domains: [])), .report(Self.b, DomainReport(domains: [])),
            .report(Self.c, DomainReport(domains: [])),
            .membership(members: [Self.a, Self.c], left: [Self.b], joined: []),
        ]
        _ = Self.applyToAll(start, &ledgers)
        for index in ledgers.indices { _ = ledgers[index].confirmDown("host2") }
        let stale = ledgers[1].departedReport  // host3's, snapshotted while host2 was away and confirmed down
        #expect(stale.hosts.map(\.confirmedDown) == [true])
        let back = CPGMember(nodeID: 2, pid: 21)
        _ = Self.applyToAll(
            [
                .membership(members: [Self.a, back, Self.c], left: [], joined: [back]),
                .hello(back, Self.hello("host2")),
            ],
            &ledgers
        )
        // host2 leaves again before the stale report is delivered: no operator confirmed this departure.
        _ = Self.applyToAll([.membership(members: [Self.a, Self.c], left: [back], joined: [])], &ledgers)
        for index in ledgers.indices { ledgers[index].merge(stale, from: Self.c) }
        #expect(ledgers.allSatisfy { $0.confirmedDown.isEmpty }, "\(ledgers.map(\.confirmedDown))")
        #expect(ledgers.allSatisfy { $0.unknownDeparted == ["host2"] })
    }

    @Test("a rendezvous: an answer before the wait counts; a deadline already past ends it; waits can follow")
    func rendezvous() async {
        let answers = Rendezvous<Int, String>()
        #expect(answers.open(1) && !answers.open(1))
        #expect(await answers.wait(1, until: .now - .seconds(1)) == nil, "past deadline: nil at once")
        #expect(await answers.wait(1, until: .now + .milliseconds(50)) == nil)
        #expect(answers.answer(1, "one") && !answers.answer(1, "again"))
        #expect(await answers.wait(1, until: .now + .seconds(5)) == "one")
        #expect(await answers.wait(1, until: .now + .seconds(5)) == "one", "the answer stays")
        #expect(answers.close(1) == "one" && answers.close(1) == nil)
        #expect(answers.open(2))
        async let late = answers.wait(2, until: .now + .seconds(30))
        try? await Task.sleep(for: .milliseconds(50))
        answers.answer(2, "two")
        #expect(await late == "two")
    }

    @Test("a rendezvous: a wait that ends forgets its deadline at once; a cancelled wait ends with nil")
    func rendezvousDeadlines() async {
        let scheduler = DeadlineScheduler(name: "rendezvous-test")
        let answers = Rendezvous<Int, String>(scheduler: scheduler)
        for key in 0..<100 {
            _ = answers.open(key)
            answers.answer(key, "\(key)")
            #expect(await answers.wait(key, until: .now + .seconds(60)) == "\(key)")
        }
        #expect(scheduler.pendingCount == 0, "answered waits keep no deadline for their 60 s")
        _ = answers.open(100)
        let waiting = Task { await answers.wait(100, until: .now + .seconds(60)) }
        try? await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        #expect(await waiting.value == nil)
        #expect(scheduler.pendingCount == 0)
        answers.answer(100, "later")
        #expect(await answers.wait(100, until: .now + .seconds(1)) == "later", "the slot stayed open")
    }
}

extension ClusterLedgerTests {
    @Test("fence races across hosts: decided at delivery, alike everywhere; the first fence wins, for the window")
    func fenceRaces() {
        var ledgers = [Self.ledger(Self.a, "host1"), Self.ledger(Self.b, "host2")]
        // x runs on host1, y on host2: the two cluster nodes fence each other through different hosts.
        let setup: [Delivery] = [
            .membership(members: [Self.a, Self.b], left: [], joined: [Self.a, Self.b]),
            .hello(Self.a, Self.hello("host1")), .hello(Self.b, Self.hello("host2")),
            .report(Self.a, DomainReport(domains: [Self.domain(Self.x, "x", "running")])),
            .report(Self.b, DomainReport(domains: [Self.domain(Self.y, "y", "running")])),
        ]
        _ = Self.applyToAll(setup, &ledgers)
        let race: [Delivery] = [
            .request(Self.a, Self.request(1, Self.y, requester: Self.x)),  // x fences y, received on host1
            .request(Self.b, Self.request(2, Self.x, requester: Self.y)),  // y fences x, received on host2
        ]
        let decided = Self.applyToAll(race, &ledgers)
        #expect(decided[0] == decided[1])
        #expect(
            decided[0].map(\.placement) == [
                .member(Self.b, host: "host2"), .raceLost(requester: "node-2", host: "host2"),
            ]
        )
        // After the winner's reply, y counts as fenced for the window: its requests still lose.
        for index in ledgers.indices {
            ledgers[index].finishFence(.init(receiver: Self.a, serial: 1), fenced: true)
        }
        let later = Self.applyToAll([.request(Self.b, Self.request(3, Self.x, requester: Self.y))], &ledgers)
        #expect(later.allSatisfy { $0.map(\.placement) == [.raceLost(requester: "node-2", host: "host2")] })
        // A fence from an unknown requester, or one that failed to fence, is not refused.
        let unknown = Self.applyToAll([.request(Self.b, Self.request(4, Self.x, requester: ""))], &ledgers)
        #expect(unknown.allSatisfy { $0.map(\.placement) == [.member(Self.a, host: "host1")] })
        for index in ledgers.indices {
            ledgers[index].finishFence(.init(receiver: Self.b, serial: 4), fenced: false)
        }
        #expect(
            ledgers.allSatisfy { $0.fences[Self.x]?.fencedAt == nil && $0.fences[Self.x]?.underWay.isEmpty == true }
        )
        // A fence_xvm request whose receiver could not tell its sender: the host where the guest runs named
        // it with its claim, and the fence is refused all the same.
        let key: [UInt8] = [7, 7, 7]
        let named = ClaimRequester(claim: CallbackClaim(key: key), requesterUUID: Self.y, requesterName: "node-2")
        for index in ledgers.indices { ledgers[index].noteRequester(named, from: Self.b, at: .now) }
        let viaClaim = Self.applyToAll(
            [.request(Self.a, Self.request(5, Self.x, requester: "", claimKey: key))],
            &ledgers
        )
        #expect(
            viaClaim.allSatisfy { $0.map(\.placement) == [.raceLost(requester: "node-2", host: "host2")] },
            "\(viaClaim)"
        )
    }
}
