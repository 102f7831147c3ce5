import FenceCore
import Foundation
import Store
import TestSupport
import Testing

/// Every Redfish resource and error body, over real HTTP with curl (plain HTTP on loopback here; the
/// fence_redfish tests use HTTPS).
@Suite("Redfish resources")
struct RedfishResourceTests {
    private func basic(_ api: APIHarness, _ name: String = "ops") -> String {
        "\(name):\(name == "ops" ? api.ops : name == "viewer" ? api.viewer : api.scoped)"
    }

    @Test("service root without credentials; Systems and each ComputerSystem with them; OData headers")
    func resources() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let version = try await api.curl("GET", "/redfish")
            #expect(version.json["v1"] as? String == "/redfish/v1/")
            for path in ["/redfish/v1", "/redfish/v1/"] {
                let root = try await api.curl("GET", path)
                #expect(root.status == 200)
                #expect(root.headers["odata-version"] == "4.0")
                #expect(root.headers["content-type"] == "application/json; charset=utf-8")
                #expect(root.json["@odata.id"] as? String == "/redfish/v1")
                #expect(root.json["@odata.type"] as? String == "#ServiceRoot.v1_11_0.ServiceRoot")
                #expect((root.json["Systems"] as? [String: Any])?["@odata.id"] as? String == "/redfish/v1/Systems")
                #expect(UUID(uuidString: root.json["UUID"] as? String ?? "") != nil)
            }
            #expect(try await api.curl("GET", "/redfish/v1/Systems").status == 401)
            let systems = try await api.curl("GET", "/redfish/v1/Systems", basic: basic(api))
            #expect(systems.status == 200, "\(systems.text)")
            let members = try #require(systems.json["Members"] as? [[String: String]])
            #expect(members.count == 9 && systems.json["Members@odata.count"] as? Int == 9)
            #expect(members.contains { $0["@odata.id"] == "/redfish/v1/Systems/\(Fixtures.uuids["pcmk1"]!)" })

            for id in ["pcmk1", Fixtures.uuids["pcmk1"]!] {
                let system = try await api.curl("GET", "/redfish/v1/Systems/\(id)", basic: basic(api))
                #expect(system.status == 200)
                #expect(system.json["@odata.type"] as? String == "#ComputerSystem.v1_13_0.ComputerSystem")
                #expect(system.json["Name"] as? String == "pcmk1" && system.json["PowerState"] as? String == "On")
                #expect(system.json["UUID"] as? String == Fixtures.uuids["pcmk1"])
                let reset = try #require(
                    (system.json["Actions"] as? [String: Any])?["#ComputerSystem.Reset"] as? [String: Any]
                )
                #expect(
                    reset["target"] as? String
                        == "/redfish/v1/Systems/\(Fixtures.uuids["pcmk1"]!)/Actions/ComputerSystem.Reset"
                )
                #expect(
                    reset["ResetType@Redfish.AllowableValues"] as? [String] == [
                        "On", "ForceOff", "ForceRestart", "GracefulShutdown", "GracefulRestart", "PushPowerButton",
                        "Nmi",
                    ]
                )
            }
            let off = try await api.curl("GET", "/redfish/v1/Systems/stopped1", basic: basic(api))
            #expect(off.json["PowerState"] as? String == "Off")
            // A token limited to some domains sees only those.
            let scoped = try await api.curl("GET", "/redfish/v1/Systems", basic: basic(api, "pcmk12"))
            #expect((scoped.json["Members"] as? [Any])?.count == 2)
        }
    }

    @Test("Reset runs through the fence service, audited with source redfish, answered 204 when done")
    func reset() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let target = "/redfish/v1/Systems/pcmk2/Actions/ComputerSystem.Reset"
            func post(_ type: String, as user: String = "ops") async throws -> CurlResult {
                try await api.curl(
                    "POST",
                    target,
                    basic: basic(api, user),
                    arguments: ["-H", "Content-Type: application/json", "--data", #"{"ResetType": "\#(type)"}"#]
                )
            }
            #expect(try await post("ForceOff").status == 204)
            #expect(try api.harness.state("pcmk2") == .shutOff)
            #expect(try await post("PushPowerButton").status == 204)
            #expect(try api.harness.state("pcmk2") == .running)
            #expect(try await post("ForceRestart").status == 204)
            #expect(try await post("PushPowerButton").status == 204)
            #expect(try await post("On").status == 204)
            #expect(try api.harness.state("pcmk2") == .running)
            let rows = try await api.harness.rows()
            // A press of the power button reads the state, then acts on it: a status row, then the action's.
            #expect(rows.map(\.action) == ["off", "status", "on", "reboot", "status", "off", "on"])
            #expect(rows.allSatisfy { $0.source == "redfish" && $0.requester == "ops" && $0.result == .success })
        }
    }

    @Test("GracefulShutdown, GracefulRestart and Nmi reach libvirt's shutdown, reboot and NMI calls, audited")
    func gracefulAndNMI() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            func post(_ type: String) async throws -> CurlResult {
                try await api.curl(
                    "POST",
                    "/redfish/v1/Systems/pcmk3/Actions/ComputerSystem.Reset",
                    basic: basic(api),
                    arguments: ["-H", "Content-Type: application/json", "--data", #"{"ResetType": "\#(type)"}"#]
                )
            }
            #expect(try await post("GracefulShutdown").status == 204)
            #expect(try api.harness.state("pcmk3") == .shutOff)  // the test driver's guest obeys at once
            let offRestart = try await post("GracefulRestart")
            #expect(offRestart.status == 409, "a guest that is off cannot restart itself: \(offRestart.text)")
            #expect((offRestart.json["error"] as? [String: Any])?["code"] as? String == "Base.1.8.ResourceInStandby")
            #expect(try await post("On").status == 204)
            #expect(try await post("GracefulRestart").status == 204)
            #expect(try await post("Nmi").status == 204)
            #expect(try api.harness.state("pcmk3") == .running)
            // The NMI really goes to libvirt: a failing call is reported, not swallowed.
            api.harness.faulty.inject(.fail, into: .injectNMI, for: Fixtures.uuids["pcmk3"]!)
            #expect(try await post("Nmi").status == 502)
            let rows = try await api.harness.rows()
            #expect(rows.map(\.action) == ["shutdown", "graceful-reboot", "on", "graceful-reboot", "nmi", "nmi"])
            #expect(rows.map(\.result) == [.success, .failure, .success, .success, .success, .failure])
            #expect(rows[0].message?.contains("shutdown requested") == true && rows[4].message == "NMI injected")
            // The REST API offers the fencing actions only.
            #expect(try await api.curl("POST", "/domains/pcmk3/shutdown", token: api.ops).status == 404)
        }
    }

    @Test("errors are Redfish error bodies with the documented statuses; refusals are audited")
    func errors() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let target = "/redfish/v1/Systems/pcmk1/Actions/ComputerSystem.Reset"
            let json = ["-H", "Content-Type: application/json", "--data"]
            /// A Reset of pcmk1 with `body`, as `credentials` (the ops token by default).
            func reset(_ body: String, as credentials: String? = nil) async throws -> CurlResult {
                try await api.curl("POST", target, basic: credentials ?? basic(api), arguments: json + [body])
            }
            let cases: [(CurlResult, Int, String)] = [
                (try await api.curl("GET", "/redfish/v1/Chassis", basic: basic(api)), 404, "ResourceMissingAtURI"),
                (
                    try await api.curl("GET", "/redfish/v1/Systems/ghost", basic: basic(api)), 404,
                    "ResourceMissingAtURI"
                ),
                (
                    try await api.curl("DELETE", "/redfish/v1/Systems/pcmk1", basic: basic(api)), 405,
                    "OperationNotAllowed"
                ),
                (try await reset("{"), 400, "MalformedJSON"),
                (try await reset("{}"), 400, "ActionParameterMissing"),
                (try await reset(#"{"ResetType": 1}"#), 400, "ActionParameterValueTypeError"),
                (try await reset(#"{"ResetType": "Boom"}"#), 400, "ActionParameterValueNotInList"),
                (try await reset(#"{"ResetType": "ForceOff"}"#, as: "ops:wrong"), 401, "NoValidSession"),
                (try await reset(#"{"ResetType": "ForceOff"}"#, as: "viewer:\(api.ops)"), 401, "NoValidSession"),
                (
                    try await reset(#"{"ResetType": "ForceOff"}"#, as: basic(api, "viewer")), 403,
                    "InsufficientPrivilege"
                ),
                // Outside the token's patterns: exactly as an unknown system.
                (
                    try await api.curl(
                        "POST",
                        "/redfish/v1/Systems/pcmk3/Actions/ComputerSystem.Reset",
                        basic: basic(api, "pcmk12"),
                        arguments: json + [#"{"ResetType": "ForceOff"}"#]
                    ), 404, "ResourceMissingAtURI"
                ),
                (
                    try await api.curl("GET", "/redfish/v1/Systems/pcmk3", basic: basic(api, "pcmk12")), 404,
                    "ResourceMissingAtURI"
                ),
                (try await reset(#"{"ResetType": null}"#), 400, "ActionParameterValueTypeError"),
                // Given twice (once escaped): parsers disagree on which counts, so neither does.
                (try await reset(#"{"ResetType": "On", "Reset\u0054ype": "ForceOff"}"#), 400, "MalformedJSON"),
            ]
            for (response, status, message) in cases {
                #expect(response.status == status, "\(response.text)")
                let error = try #require(response.json["error"] as? [String: Any], "\(response.text)")
                #expect(error["code"] as? String == "Base.1.8.\(message)", "\(response.text)")
                let info = try #require((error["@Message.ExtendedInfo"] as? [[String: Any]])?.first)
                #expect(info["MessageId"] as? String == "Base.1.8.\(message)" && info["Resolution"] != nil)
            }
            #expect(cases[7].0.headers["www-authenticate"]?.hasPrefix("Basic realm=") == true)
            let unknown = try await api.curl("GET", "/redfish/v1/Systems/pcmk9", basic: basic(api, "pcmk12"))
            #expect(
                cases[11].0.text == unknown.text.replacingOccurrences(of: "pcmk9", with: "pcmk3"),
                "\(cases[11].0.text) vs \(unknown.text)"
            )
            #expect(try api.harness.state("pcmk1") == .running)
            #expect(try api.harness.state("pcmk3") == .running)
            let refused = try await api.harness.rows().filter { $0.result == .refused }
            #expect(refused.count == 5, "\(refused.map { "\($0.action) \($0.target) \($0.message ?? "")" })")
            #expect(refused.allSatisfy { $0.source == "redfish" })
        }
    }

    @Test("without redfish enabled, /redfish is an ordinary unknown route")
    func disabled() async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("GET", "/redfish/v1")
            #expect(response.status == 404)
        }
    }
}
