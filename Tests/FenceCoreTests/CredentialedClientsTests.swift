import Foundation
import Store
import TestSupport
import Testing

@testable import FenceCore

@Suite("Client addresses with credentials: remembered within bounds")
struct CredentialedClientsTests {
    @Test("an address counts once it presented a valid credential; the one noted longest ago goes first")
    func bounded() {
        let clients = CredentialedClients(capacity: 3)
        #expect(!clients.contains("198.18.0.11"))
        for address in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] { clients.note(address) }
        clients.note("198.18.0.11")  // noted again: now the latest
        clients.note("fd00::14")  // pushes out 198.18.0.12
        #expect(clients.contains("198.18.0.11") && clients.contains("198.18.0.13") && clients.contains("fd00::14"))
        #expect(!clients.contains("198.18.0.12"))
    }
}

@Suite("Client addresses with fence tokens: known again after a restart")
struct CredentialedClientsRestoreTests {
    @Test("from the audit log's last day: fence tokens' addresses, not read tokens', refusals or older ones")
    func restored() async throws {
        let harness = try await ServiceHarness()
        let tokens = AccessTokens(store: harness.store)
        _ = try await tokens.create(name: "agent", scope: .fence, domainPatterns: [])
        _ = try await tokens.create(name: "viewer", scope: .read, domainPatterns: [])
        _ = try await tokens.create(name: "gone", scope: .fence, domainPatterns: [])
        _ = try await harness.store.revokeToken(named: "gone")
        func row(
            _ address: String,
            _ requester: String?,
            hoursAgo: Double,
            _ result: AuditResult = .success
        )
            -> (AuditIntent, AuditCompletion)
        {
            let at = Date().addingTimeInterval(-hoursAgo * 3600)
            return (
                AuditIntent(
                    source: "redfish",
                    requester: requester,
                    clientAddress: address,
                    target: "pcmk1",
                    domainName: "pcmk1",
                    domainUUID: nil,
                    action: "status",
                    requestedAt: at
                ),
                AuditCompletion(result: result, powerState: "on", errorCode: nil, message: nil, finishedAt: at)
            )
        }
        try await harness.store.insertFinished([
            row("198.18.0.21", "agent", hoursAgo: 3), row("198.18.0.22", "viewer", hoursAgo: 1),
            row("198.18.0.23", nil, hoursAgo: 1, .refused), row("198.18.0.24", "agent", hoursAgo: 30),
            row("198.18.0.25", "gone", hoursAgo: 1),
        ])
        // A service started on the same audit log, as after a restart.
        let restarted = FenceService(hypervisor: harness.faulty, store: harness.store, logger: ServiceHarness.logger)
        #expect(!restarted.credentialedClients.contains("198.18.0.21"))
        await restarted.restoreCredentialedClients()
        #expect(restarted.credentialedClients.contains("198.18.0.21"))
        for address in ["198.18.0.22", "198.18.0.23", "198.18.0.24", "198.18.0.25"] {
            #expect(!restarted.credentialedClients.contains(address), "\(address)")
        }
    }
}
