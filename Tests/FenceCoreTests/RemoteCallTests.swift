import FenceCore
import TestSupport
import Testing

/// What one request costs a remote libvirtd: every read is a call to the daemon (over its socket here, as
/// on `qemu:///system`), counted by the daemon itself.
@Suite("Calls to a remote libvirtd per request", .serialized)
struct RemoteCallTests {
    /// libvirt's remote procedures (`remote_protocol.x`) that a status makes.
    enum Procedure: Int {
        case lookUpByName = 23
        case lookUpByUUID = 24
        case isPersistent = 151
        case getState = 212
    }

    static func status(_ target: String) -> FenceRequest {
        FenceRequest(action: .status, target: DomainTarget(target), origin: ServiceHarness.origin)
    }

    /// The procedures `body` called on `libvirtd`.
    static func procedures(on libvirtd: PrivateLibvirtd, _ body: () async throws -> Void) async throws -> [Int] {
        let before = try libvirtd.calls().count
        try await body()
        return Array(try libvirtd.calls().dropFirst(before))
    }

    @Test("a status, at once or by the usual path, looks the domain up once and reads it on that handle: 3 calls")
    func statusCalls() async throws {
        let libvirtd = try await PrivateLibvirtd(logsCalls: true)
        let harness = try await ServiceHarness(uri: libvirtd.uri)
        try harness.libvirt.checkConnection()  // opens the connection, which a status at once needs idle
        let expected = [Procedure.lookUpByName, .isPersistent, .getState].map(\.rawValue)

        let atOnce = try await Self.procedures(on: libvirtd) {
            #expect(harness.service.statusAtOnce(Self.status("test"), since: .now)?.power == .on)
        }
        #expect(atOnce == expected)
        let usual = try await Self.procedures(on: libvirtd) {
            let power = try await harness.service.status(Self.status("test")).power
            #expect(power == .on)
        }
        #expect(usual == expected)
        // By UUID: the lookup by UUID, the same two reads.
        let uuid = try harness.libvirt.domain(DomainTarget("test")).uuid
        let byUUID = try await Self.procedures(on: libvirtd) {
            let name = try await harness.service.status(Self.status(uuid)).name
            #expect(name == "test")
        }
        #expect(byUUID == [Procedure.lookUpByUUID, .isPersistent, .getState].map(\.rawValue))
    }

    @Test("a read of one domain (REST's and Redfish's GET) looks it up and reads it: 3 calls")
    func readCalls() async throws {
        let libvirtd = try await PrivateLibvirtd(logsCalls: true)
        let harness = try await ServiceHarness(uri: libvirtd.uri)
        try harness.libvirt.checkConnection()
        let read = try await Self.procedures(on: libvirtd) {
            let domain = try await harness.service.read(Self.status("test"))
            #expect(domain.power == .on && domain.isPersistent)
        }
        #expect(read == [Procedure.lookUpByName, .getState, .isPersistent].map(\.rawValue))
    }
}
