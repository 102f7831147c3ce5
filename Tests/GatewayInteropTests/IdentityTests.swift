import Foundation
import Store
import TestSupport
import Testing

/// Groups decide on the domain libvirt acts on, byte for byte, with fence_virtd's ASCII-only case folding
/// kept only where it names one domain. Real fence_xvm, real gateway, the identity fixture.
@Suite("Identity: groups authorize exactly the domain that is fenced", requiresRoot)
struct GroupIdentityTests {
    @Test("a guest allowed web1 and café cannot fence WEB1 or café spelled with a combining accent")
    func groupsMatchTheResolvedDomain() async throws {
        let lab = try await GatewayLab(guests: 1)
        // db1: differs from the domain Db1 in ASCII case only, and no domain is named exactly db1.
        try await lab.startFencegate(
            ["--group", "ip=\(lab.guestIPv4(0));domain=web1,caf\u{E9},db1"],
            uri: Fixtures.identityURI
        )

        #expect(try await lab.fenceXVM(["-H", "web1", "-o", "status"]).stdout == "Status: ON\n")
        for other in ["WEB1", "cafe\u{301}"] {
            let refused = try await lab.fenceXVM(["-H", other, "-o", "off"])
            #expect(
                refused.status == 3 && refused.stdout.contains("Permission denied"),
                "\(other): \(refused.stdout)\(refused.stderr)"
            )
        }
        // fence_virtd's case folding where it is unambiguous: db1 stands for Db1.
        #expect(try await lab.fenceXVM(["-H", "Db1", "-o", "off"]).status == 0)

        // The list shows UUIDs too; compared by UUID, since Swift's String equality would take either café
        // for the other.
        let list = try await lab.fenceXVM(["-o", "list"])
        let uuids = Fixtures.identityUUIDs
        let listed = Set(uuids.values.filter { list.stdout.contains($0) })
        #expect(listed == [uuids["web1"]!, uuids["café precomposed"]!, uuids["Db1"]!], "\(list.stdout)")

        let rows = try await lab.rows()
        let fenced = rows.filter { $0.action == "off" && $0.result == .success }
        #expect(
            fenced.map(\.domainUUID) == [Fixtures.identityUUIDs["Db1"]],
            "\(rows.map { "\($0.action) \($0.target) \($0.result?.rawValue ?? "-")" })"
        )
        let refused = rows.filter { $0.result == .refused }
        #expect(refused.map { Array($0.target.utf8) } == [Array("WEB1".utf8), Array("cafe\u{301}".utf8)])
        // Every operation has its row before it acts: no row names WEB1's or the other café's UUID, so
        // nothing touched them.
        let untouched = [Fixtures.identityUUIDs["WEB1"], Fixtures.identityUUIDs["café decomposed"]]
        #expect(!rows.contains { untouched.contains($0.domainUUID) })
    }
}
