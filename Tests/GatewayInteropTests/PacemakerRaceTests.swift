import Foundation
import Store
import TestSupport
import Testing

/// `FENCEGATE_RACE_ROUNDS=N` runs N rounds of every combination for the figures in RELIABILITY.md.
private let figureRounds = ProcessInfo.processInfo.environment["FENCEGATE_RACE_ROUNDS"].flatMap { Int($0) }

/// Issue 13's proof with the real thing: a two-node Pacemaker cluster (corosync with `two_node: 1`, pacemaker,
/// the unchanged fence_xvm, no fencing delays) on QEMU domains of a private libvirtd, whose link is cut so
/// that both nodes fence each other at once (`PacemakerRaceLab`).
@Suite("Fence races in a real Pacemaker cluster", requiresRoot, .serialized)
struct PacemakerRaceTests {
    @Test(
        "the link between two nodes is cut and both fence at once: exactly one is fenced, every round, and the survivor runs the service"
    )
    func oneNodeSurvives() async throws {
        let lab = try await PacemakerRaceLab()
        for round in 1...2 {
            // The loser's QEMU dies only of libvirt's SIGKILL, 10 s into the destroy: the loser surely asks.
            let outcome = try await lab.round(round, server: .fencegate, teardown: .heldUntilKill)
            print("fence race: \(outcome)")
            Self.checkOneNodeFenced(outcome, lab: lab)
            // The loser's request arrived while it still ran, and was refused: without arbitration it would have
            // been carried out, fencing both nodes.
            #expect(!outcome.refusals.isEmpty, "the loser did not ask: \(outcome)")
        }
    }

    /// Every combination of server and teardown, N rounds each, for the figures in RELIABILITY.md
    /// (`FENCEGATE_RACE_SERVERS=fence_virtd,…` for some servers only). Whether both nodes die without
    /// arbitration depends on the loser outliving the gap between the two requests, so the suite runs only
    /// `oneNodeSurvives`.
    @Test(
        "figures: N rounds of each combination of server and teardown",
        .enabled(if: figureRounds != nil, "set FENCEGATE_RACE_ROUNDS=N"),
        arguments: [PacemakerRaceLab.Teardown.immediate, .heldUntilKill],
        [PacemakerRaceLab.Server.fencegate, .fencegateWithoutArbitration, .fenceVirtd]
    )
    func figures(teardown: PacemakerRaceLab.Teardown, server: PacemakerRaceLab.Server) async throws {
        if let only = ProcessInfo.processInfo.environment["FENCEGATE_RACE_SERVERS"],
            !only.split(separator: ",").contains(where: { $0 == server.rawValue })
        {
            return
        }
        let lab = try await PacemakerRaceLab()
        var outcomes: [PacemakerRaceLab.Outcome] = []
        for round in 1...(figureRounds ?? 1) {
            let outcome = try await lab.round(round, server: server, teardown: teardown)
            print("fence race: \(outcome)")
            outcomes.append(outcome)
        }
        let one = outcomes.filter { $0.fencedDomains.count == 1 && $0.survivors.count == 1 }
        let gaps = outcomes.compactMap(\.requestGap).sorted()
        print(
            "fence race figures: \(server), \(teardown): \(outcomes.count) rounds; "
                + "one node fenced in \(one.count) (service on the survivor in "
                + "\(one.filter { $0.serviceAfter == $0.survivors.first }.count)), both in "
                + "\(outcomes.filter { $0.fencedDomains.count == 2 }.count); the loser asked in "
                + "\(outcomes.filter { $0.fenceRows.count >= 2 }.count); refused in \(outcomes.filter { !$0.refusals.isEmpty }.count); "
                + "gap between the requests "
                + (gaps.isEmpty
                    ? "-"
                    : String(format: "%.2f–%.2f s (median %.2f s)", gaps.first!, gaps.last!, gaps[gaps.count / 2]))
        )
        switch server {
        case .fencegate:
            for outcome in outcomes { Self.checkOneNodeFenced(outcome, lab: lab) }
        case .fencegateWithoutArbitration where teardown == .heldUntilKill:
            #expect(outcomes.allSatisfy { $0.fencedDomains.count == 2 }, "\(outcomes)")
        default:
            break
        }
    }

    /// Exactly one domain fenced, its node the one that lost power, the other node running the service, and
    /// every refusal naming the winning operation.
    private static func checkOneNodeFenced(_ outcome: PacemakerRaceLab.Outcome, lab: PacemakerRaceLab) {
        #expect(outcome.fencedDomains.count == 1, "\(outcome)")
        #expect(outcome.powerCuts.count == 1 && outcome.survivors.count == 1, "\(outcome)")
        if let survivor = outcome.survivors.first, let loser = outcome.powerCuts.first {
            #expect(outcome.serviceAfter == survivor, "the survivor keeps (or takes over) the service: \(outcome)")
            #expect(outcome.fencedDomains == [lab.domains[loser.node]], "\(outcome)")
        }
        let winner = outcome.fenceRows.first { $0.result == .success }
        for refusal in outcome.refusals {
            #expect(refusal.message == "refused: requester was fenced by operation \(winner?.id ?? -1)", "\(outcome)")
        }
    }
}
