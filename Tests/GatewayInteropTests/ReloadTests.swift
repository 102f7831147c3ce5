import Foundation
import TestSupport
import Testing

/// SIGHUP re-reads fence_virt.conf and the key file under the running gateway: a rotated key and changed
/// groups apply to the next request, without a restart and without dropping the listener.
@Suite("Reload on SIGHUP", requiresRoot, .serialized)
struct ReloadTests {
    @Test("a rotated key and new groups apply after SIGHUP; the old key stops working")
    func rotateKeyAndGroups() async throws {
        let lab = try await GatewayLab(guests: 2)
        let guest0 = lab.guestIPv4(0)
        let configuration = try lab.writeFenceVirtConf()
        try await lab.startFencegate(fenceVirtConf: configuration)
        let server = try #require(lab.server)
        #expect(try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"]).status == 0)

        // The administrator rotates the key (guests get the new one) and restricts guest 1 to pcmk2.
        let oldKey = lab.fencegate.directory.file("old.key")
        try FileManager.default.copyItem(atPath: lab.keyPath, toPath: oldKey)
        let keygen = try await lab.fencegate.run(["keygen", "--force", lab.keyPath])
        #expect(keygen.status == 0, "\(keygen.stderr)")
        var text = try String(contentsOfFile: configuration, encoding: .utf8)
        text += """

            groups {
                group {
                    ip = "\(guest0)";
                    uuid = "pcmk2";
                }
            }
            """
        try text.write(toFile: configuration, atomically: true, encoding: .utf8)
        kill(server.processIdentifier, SIGHUP)
        try await waitUntil("the reload is logged") {
            ((try? String(contentsOfFile: lab.fencegate.directory.file("serve.err"), encoding: .utf8)) ?? "")
                .contains("reloaded the gateway's key, hashes and groups")
        }

        let withOldKey = try await lab.fenceXVM(["-H", "pcmk2", "-o", "status", "-t", "2"], key: oldKey)
        #expect(withOldKey.status != 0, "the old key still works after the rotation")
        #expect(try await lab.fenceXVM(["-H", "pcmk2", "-o", "status"]).status == 0)
        let denied = try await lab.fenceXVM(["-H", "pcmk1", "-o", "off"])
        #expect(denied.status == 3 && denied.stdout.contains("Permission denied"), "\(denied.stdout)\(denied.stderr)")
        #expect(server.isRunning)
        try await lab.stopServer()
    }
}
