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
