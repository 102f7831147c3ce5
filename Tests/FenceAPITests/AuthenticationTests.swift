import FenceCore
import Foundation
import Store
import TestSupport
import Testing

@Suite("HTTP API: authentication and authorization")
struct AuthenticationTests {
    @Test(
        "every endpoint but /healthz needs a valid bearer token",
        arguments: [
            ("GET", "/domains"), ("GET", "/domains/pcmk1"), ("POST", "/domains/pcmk1/off"), ("GET", "/operations"),
            ("GET", "/operations/1"), ("GET", "/metrics"),
        ]
    )
    func tokenRequired(method: String, path: String) async throws {
        try await APIHarness.withRunning { api in
            for token: String? in [
                nil, "", "garbage", "fgt_0123456789abcdef_" + String(repeating: "A", count: 43),
                api.ops + "x", String(api.ops.dropLast()) + (api.ops.last == "A" ? "B" : "A"),
            ] {
                let response = try await api.curl(method, path, token: token)
                #expect(response.status == 401, "\(method) \(path) with \(token ?? "no token")")
                #expect(response.headers["content-type"] == "application/problem+json")
                #expect(response.headers["www-authenticate"] == "Bearer realm=\"fencegate\"")
                #expect(response.json["type"] as? String == "urn:fencegate:problem:unauthorized")
            }
            let basic = try await api.curl(method, path, arguments: ["-u", "ops:\(api.ops)"])
            #expect(basic.status == 401)
            #expect(try api.harness.state("pcmk1") == .running)
            #expect(try await api.curl("GET", "/healthz").status == 200)
        }
    }

    @Test("a revoked token stops working at once, without a restart")
    func revocation() async throws {
        try await APIHarness.withRunning { api in
            #expect(try await api.curl("GET", "/domains", token: api.viewer).status == 200)
            try await AccessTokens(store: api.harness.store).revoke(name: "viewer")
            let response = try await api.curl("GET", "/domains", token: api.viewer)
            #expect(response.status == 401)
            #expect(try await api.curl("GET", "/domains", token: api.ops).status == 200)
        }
    }

    @Test("a token revoked through another connection to the database is refused on the very next request")
    func revocationByAnotherConnection() async throws {
        try await APIHarness.withRunning { api in
            // A second store on the same file, as `fencegate token revoke` in another process opens it.
            let other = try await AuditStore.open(path: api.harness.store.path, logger: ServiceHarness.logger)
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.viewer).status == 200)
            #expect(try await api.curl("GET", "/metrics", token: api.viewer).status == 200)
            try await AccessTokens(store: other).revoke(name: "viewer")
            #expect(try await api.curl("GET", "/metrics", token: api.viewer).status == 401)
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.viewer).status == 401)
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.ops).status == 200)
            // The refused read is audited as before, with the reason.
            let refusals = try await api.harness.rows().filter { $0.result == .refused }
            #expect(refusals.map(\.target) == ["pcmk1"])
            #expect(refusals.first?.message?.contains("token 'viewer' is revoked") == true)
        }
    }

    @Test("a token created through another connection to the database works on the very next request")
    func creationByAnotherConnection() async throws {
        try await APIHarness.withRunning { api in
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.viewer).status == 200)
            let other = try await AuditStore.open(path: api.harness.store.path, logger: ServiceHarness.logger)
            let late = try await AccessTokens(store: other).create(name: "late", scope: .read, domainPatterns: [])
            #expect(try await api.curl("GET", "/domains/pcmk1", token: late.secret).status == 200)
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.viewer).status == 200)
        }
    }

    @Test("a read token may read but not fence; the refused attempt is audited and nothing is done")
    func readScope() async throws {
        try await APIHarness.withRunning { api in
            #expect(try await api.curl("GET", "/domains/pcmk3", token: api.viewer).status == 200)
            #expect(try await api.curl("GET", "/operations", token: api.viewer).status == 200)
            #expect(try await api.curl("GET", "/metrics", token: api.viewer).status == 200)
            let response = try await api.curl("POST", "/domains/pcmk3/off", token: api.viewer)
            #expect(response.status == 403)
            #expect(response.json["type"] as? String == "urn:fencegate:problem:forbidden")
            #expect(try api.harness.state("pcmk3") == .running)
            let row = try #require(try await api.harness.rows().last)
            #expect(row.result == .refused)
            #expect(row.requester == "viewer")
            #expect(row.clientAddress == "127.0.0.1")
            #expect(row.source == "http")
            #expect(row.action == "off")
            #expect(row.target == "pcmk3")
        }
    }

    @Test("a fence attempt without valid credentials is audited as refused")
    func unauthenticatedFenceAudited() async throws {
        try await APIHarness.withRunning { api in
            #expect(try await api.curl("POST", "/domains/pcmk4/reboot").status == 401)
            #expect(try await api.curl("POST", "/domains/pcmk4/off", token: "fgt_nope").status == 401)
            let rows = try await api.harness.rows()
            #expect(rows.map(\.result) == [.refused, .refused])
            #expect(rows.map(\.action) == ["reboot", "off"])
            #expect(rows.allSatisfy { $0.requester == nil && $0.clientAddress == "127.0.0.1" })
            #expect(rows[0].message?.contains("no bearer token") == true)
            #expect(rows[1].message?.contains("malformed") == true)
            #expect(try api.harness.state("pcmk4") == .running)
        }
    }

    @Test("a token limited to some domains sees and fences only those")
    func domainScope() async throws {
        try await APIHarness.withRunning { api in
            let list = try await api.curl("GET", "/domains", token: api.scoped)
            let names = (list.json["domains"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == ["pcmk1", "pcmk2"])
            // A domain outside the patterns answers exactly as one that does not exist.
            let hidden = try await api.curl("GET", "/domains/pcmk3", token: api.scoped)
            let unknown = try await api.curl("GET", "/domains/pcmk9", token: api.scoped)
            #expect(hidden.status == 404 && unknown.status == 404)
            #expect(
                hidden.text == unknown.text.replacingOccurrences(of: "pcmk9", with: "pcmk3"),
                "\(hidden.text) vs \(unknown.text)"
            )
            #expect(try await api.curl("GET", "/domains/\(Fixtures.uuids["pcmk3"]!)", token: api.scoped).status == 404)
            #expect(try await api.curl("GET", "/domains/\(Fixtures.uuids["pcmk2"]!)", token: api.scoped).status == 200)
            // The metrics count every domain's operations: not for a token limited to some.
            #expect(try await api.curl("GET", "/metrics", token: api.scoped).status == 403)
            #expect(try await api.curl("GET", "/metrics", token: api.viewer).status == 200)

            let refused = try await api.curl("POST", "/domains/\(Fixtures.uuids["pcmk3"]!)/off", token: api.scoped)
            let unknownUUID = try await api.curl(
                "POST",
                "/domains/aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa/off",
                token: api.scoped
            )
            #expect(refused.status == 404)
            #expect(
                refused.text
                    == unknownUUID.text.replacingOccurrences(
                        of: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
                        with: Fixtures.uuids["pcmk3"]!
                    ),
                "\(refused.text) vs \(unknownUUID.text)"
            )
            #expect(try api.harness.state("pcmk3") == .running)
            #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.scoped).status == 200)
            #expect(try await api.curl("POST", "/domains/ghost/off", token: api.scoped).status == 404)

            // Its view of the audit log holds only its domains' operations.
            _ = try await api.curl("POST", "/domains/pcmk5/off", token: api.ops)
            let operations = try await api.curl("GET", "/operations", token: api.scoped)
            let seen = (operations.json["operations"] as? [[String: Any]])?.compactMap { $0["domain_name"] as? String }
            #expect(seen == ["pcmk1", "pcmk2"])  // its off of pcmk1 and its read of pcmk2, newest first
            let all = try await api.harness.rows()
            let pcmk5 = try #require(all.first { $0.domainName == "pcmk5" })
            #expect(try await api.curl("GET", "/operations/\(pcmk5.id)", token: api.scoped).status == 404)
            #expect(try await api.curl("GET", "/operations/\(pcmk5.id)", token: api.ops).status == 200)
            // Every request about domains is audited: the list and the reads that were allowed too. Reading
            // and fencing pcmk3 were refused (as such, with the reason); the unknown domains were failures,
            // and aaaaaaaa… was never found, so it was not refused.
            #expect(
                all.map(\.result) == [
                    .success, .refused, .failure, .refused, .success, .refused, .failure, .success, .failure, .success,
                ],
                "\(all.map { "\($0.action) \($0.target) \($0.result?.rawValue ?? "")" })"
            )
            #expect(all[0].requester == "pcmk12" && all[0].action == "list")
            #expect(
                all.filter { $0.result == .refused }.allSatisfy {
                    $0.message?.contains("outside token 'pcmk12'") == true
                }
            )
        }
    }
}
