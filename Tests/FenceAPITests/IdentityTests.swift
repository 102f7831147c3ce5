import FenceCore
import Foundation
import TestSupport
import Testing

/// Token patterns decide on the domain libvirt acts on, byte for byte (Unicode scalars, no folding, no
/// normalization), with one lookup: what is authorized is what is fenced.
@Suite("Identity: token patterns authorize exactly the domain that is fenced")
struct TokenIdentityTests {
    @Test("a token for café and web1 cannot touch café spelled with a combining accent, nor WEB1")
    func patternsMatchTheResolvedDomain() async throws {
        try await APIHarness.withRunning(uri: Fixtures.identityURI) { api in
            let token = try await AccessTokens(store: api.harness.store).create(
                name: "narrow",
                scope: .fence,
                domainPatterns: ["caf\u{E9}", "web?"]
            ).secret
            // The decomposed spelling, percent-encoded as UTF-8: e, U+0301.
            for path in ["/domains/cafe%CC%81", "/domains/WEB1"] {
                #expect(try await api.curl("GET", path, token: token).status == 404, "\(path)")
                #expect(try await api.curl("POST", path + "/off", token: token).status == 404, "\(path)/off")
            }
            #expect(try await api.curl("POST", "/domains/caf%C3%A9/off", token: token).status == 200)
            #expect(try await api.curl("POST", "/domains/web1/off", token: token).status == 200)

            // Compared by UUID: Swift's String equality would take either café for the other.
            let listed = (try await api.curl("GET", "/domains", token: token).json["domains"] as? [[String: Any]])?
                .compactMap { $0["uuid"] as? String }
            #expect(listed == [Fixtures.identityUUIDs["café precomposed"]!, Fixtures.identityUUIDs["web1"]!])
            for name in ["café decomposed", "WEB1", "Db1"] {
                #expect(try api.harness.libvirt.state(ofDomain: Fixtures.identityUUIDs[name]!) == .running, "\(name)")
            }
            for name in ["café precomposed", "web1"] {
                #expect(try api.harness.libvirt.state(ofDomain: Fixtures.identityUUIDs[name]!) == .shutOff, "\(name)")
            }
        }
    }

    @Test(
        "a target is limited in UTF-8 bytes and may not hold control characters: 400, no row",
        arguments: [
            // 100 characters of 4 bytes each (U+00E9 and a combining U+0301): 400 bytes.
            String(repeating: "%C3%A9%CC%81", count: 100), "pcmk%0A1", "pcmk%1B%5B31m1", "a%C2%851",
        ]
    )
    func targetLimits(encoded: String) async throws {
        try await APIHarness.withRunning { api in
            let fence = try await api.curl("POST", "/domains/\(encoded)/off", token: api.ops)
            #expect(fence.status == 400, "\(fence.text)")
            let anonymous = try await api.curl("POST", "/domains/\(encoded)/off")
            #expect(anonymous.status == 400, "\(anonymous.text)")
            #expect(try await api.curl("GET", "/domains/\(encoded)", token: api.ops).status == 400)
            #expect(try await api.harness.rows().isEmpty)
        }
    }
}
