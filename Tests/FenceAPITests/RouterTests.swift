import FenceCore
import Foundation
import TestSupport
import Testing

@testable import FenceAPI

/// The route table on its own: a root group answering with problems and a group mounted at `/redfish`
/// answering with Redfish errors, each handler echoing what it was given.
@Suite("Router: matching, methods, path rules and each mount's errors")
struct RouterTests {
    /// Refuses every credential: for routes whose handler must never run.
    struct RefusingAuthenticator: Authenticator {
        func token(for request: HTTPRequest, about subject: FenceRequest?) async throws -> AccessToken {
            throw FenceError.unauthenticated(reason: "refused by the test")
        }
    }

    /// An error no mount knows.
    struct UnknownError: Error {}

    static let router: Router = {
        var root = RouteGroup(errors: Problem.self, authenticator: RefusingAuthenticator())
        root.open(.get, "/items") { _, _ in .json(.string("items")) }
        root.open(.get, "/items/{item}") { _, parameters in .json(.string("item " + (try parameters.require("item")))) }
        root.open(.post, "/items/{item}/touch") { _, parameters in
            .json(.string("touched " + (try parameters.require("item"))))
        }
        root.open(.get, "/domains/{domain}") { _, parameters in
            .json(.string(try parameters.require("domain", as: DomainTarget.self).description))
        }
        root.open(.get, "/failing") { _, _ in throw UnknownError() }
        root.open(.get, "/undeclared") { _, parameters in .json(.string(try parameters.require("nothing"))) }
        root.authenticated(.get, "/private") { _, _, _ in .json(.string("private")) }
        root.authenticated(.post, "/domains/{domain}/off", about: Self.offRequest) { _, _, _ in .json(.string("off")) }

        var redfish = RouteGroup(
            errors: RedfishError.self,
            authenticator: RefusingAuthenticator(),
            allowsTrailingSlash: true
        )
        redfish.open(.get, "/") { _, _ in .json(.string("redfish")) }
        redfish.open(.get, "/v1") { _, _ in .json(.string("v1")) }
        redfish.open(.get, "/v1/Systems/{id}") { _, parameters in
            .json(.string(try parameters.require("id", as: DomainTarget.self).description))
        }
        redfish.authenticated(.get, "/v1/Private") { _, _, _ in .json(.string("private")) }

        var router = Router(root: root, logger: ServiceHarness.logger)
        router.mount(redfish, at: "/redfish")
        return router
    }()

    static func offRequest(_ http: HTTPRequest, _ parameters: PathParameters) throws -> FenceRequest {
        FenceRequest(
            action: .off,
            target: try parameters.require("domain", as: DomainTarget.self),
            origin: RequestOrigin(frontEnd: .http, requester: nil)
        )
    }

    static func respond(_ method: String, _ path: String, isValidUTF8: Bool = true) async -> HTTPResponse {
        await router.respond(to: HTTPRequest(method: method, path: path, isValidUTF8: isValidUTF8))
    }

    static func json(_ response: HTTPResponse) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
    }

    static func header(_ response: HTTPResponse, _ name: String) -> String? {
        response.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The problem type, for the root's errors.
    static func problemType(_ response: HTTPResponse) -> String? {
        (json(response) as? [String: Any])?["type"] as? String
    }

    /// The Base message, for Redfish's errors.
    static func redfishCode(_ response: HTTPResponse) -> String? {
        ((json(response) as? [String: Any])?["error"] as? [String: Any])?["code"] as? String
    }

    @Test("a route's handler gets its decoded parameters")
    func matching() async {
        #expect(Self.json(await Self.respond("GET", "/items")) as? String == "items")
        #expect(Self.json(await Self.respond("GET", "/items/pen")) as? String == "item pen")
        #expect(Self.json(await Self.respond("POST", "/items/pen/touch")) as? String == "touched pen")
        #expect(Self.json(await Self.respond("GET", "/redfish/v1")) as? String == "v1")
    }

    @Test("HEAD runs the GET route and keeps its headers and body (the server sends no body)")
    func head() async {
        for path in ["/items/pen", "/redfish/v1"] {
            let get = await Self.respond("GET", path)
            let head = await Self.respond("HEAD", path)
            #expect(head.status == 200 && head.body == get.body, "\(path)")
            #expect(head.headers.map { "\($0.0): \($0.1)" } == get.headers.map { "\($0.0): \($0.1)" }, "\(path)")
        }
    }

    @Test(
        "a known path with another method is a 405 with Allow, in the mount's error type",
        arguments: [
            ("DELETE", "/items/pen", "GET, HEAD"), ("POST", "/items", "GET, HEAD"), ("GET", "/items/pen/touch", "POST"),
            ("HEAD", "/items/pen/touch", "POST"), ("PUT", "/redfish/v1", "GET, HEAD"),
            ("POST", "/redfish/", "GET, HEAD"),
        ]
    )
    func methodNotAllowed(method: String, path: String, allow: String) async {
        let response = await Self.respond(method, path)
        #expect(response.status == 405)
        #expect(Self.header(response, "Allow") == allow)
        if path.hasPrefix("/redfish") {
            #expect(Self.redfishCode(response) == "Base.1.8.OperationNotAllowed")
        } else {
            #expect(Self.problemType(response) == "urn:fencegate:problem:method-not-allowed")
            let detail = (Self.json(response) as? [String: Any])?["detail"] as? String
            #expect(detail == "\(method) is not allowed here; use \(allow)")
        }
    }

    @Test(
        "an unknown path is a 404 in the mount's error type",
        arguments: [
            "/nothing", "/Items", "/items/pen/touch/more", "/items/pen/poke", "/redfish/v2", "/redfish/V1", "/redfishx",
        ]
    )
    func notFound(path: String) async {
        let response = await Self.respond("GET", path)
        #expect(response.status == 404)
        if path.hasPrefix("/redfish/") {
            #expect(Self.redfishCode(response) == "Base.1.8.ResourceMissingAtURI")
        } else {
            #expect(Self.problemType(response) == "urn:fencegate:problem:not-found")
        }
    }

    @Test(
        "empty and dot segments name no route, encoded or not, in any mount",
        arguments: [
            "/", "", "*", "//items", "/items/", "/items//touch", "/items/./pen", "/items/../items", "/items/%2e",
            "/items/%2E%2E", "/items/pen/touch/..", "/redfish//", "/redfish/v1//", "/redfish/./v1", "/redfish/v1/..",
            "/redfish/v1/Systems/%2e%2e",
        ]
    )
    func pathShape(path: String) async {
        for method in ["GET", "POST"] {
            let response = await Self.respond(method, path)
            #expect(response.status == 404, "\(method) \(path)")
            if path.hasPrefix("/redfish/") {
                #expect(Self.redfishCode(response) == "Base.1.8.ResourceMissingAtURI", "\(path)")
            } else {
                #expect(Self.problemType(response) == "urn:fencegate:problem:not-found", "\(path)")
            }
        }
    }

    @Test("each segment is percent-decoded on its own: %2F stays inside a parameter, literals match decoded")
    func percentDecoding() async {
        #expect(Self.json(await Self.respond("GET", "/items/a%2Fb")) as? String == "item a/b")
        #expect(await Self.respond("POST", "/items/pen%2Ftouch").status == 405)
        #expect(Self.json(await Self.respond("GET", "/item%73/caf%C3%A9")) as? String == "item café")
        #expect(Self.json(await Self.respond("GET", "/%72edfish/v%31")) as? String == "v1")
        #expect(await Self.respond("GET", "/redfish%2Fv1").status == 404)
    }

    @Test(
        "a request the router cannot read is a 400 problem, whichever mount its path names",
        arguments: ["/items/%ZZ", "/items/%2", "/items/%00", "/items/%C3%28", "/redfish/%ZZ"]
    )
    func unreadable(path: String) async {
        let response = await Self.respond("GET", path)
        #expect(response.status == 400)
        #expect(Self.problemType(response) == "urn:fencegate:problem:bad-request")
        let notUTF8 = await Self.respond("GET", "/items", isValidUTF8: false)
        #expect(notUTF8.status == 400 && Self.problemType(notUTF8) == "urn:fencegate:problem:bad-request")
    }

    @Test("the Redfish mount allows one trailing slash; the root allows none")
    func trailingSlash() async {
        #expect(Self.json(await Self.respond("GET", "/redfish")) as? String == "redfish")
        #expect(Self.json(await Self.respond("GET", "/redfish/")) as? String == "redfish")
        #expect(Self.json(await Self.respond("GET", "/redfish/v1/")) as? String == "v1")
        #expect(Self.json(await Self.respond("GET", "/redfish/v1/Systems/pcmk1/")) as? String == "pcmk1")
        #expect(await Self.respond("GET", "/redfish/v1//").status == 404)
        #expect(await Self.respond("GET", "/items/").status == 404)
    }

    @Test("a parameter that cannot name a domain: 400 with the reason at the root, no such resource in Redfish")
    func parameterLimits() async {
        let long = String(repeating: "a", count: DomainTarget.maximumBytes + 1)
        for name in [long, "x%01"] {
            let rest = await Self.respond("GET", "/domains/\(name)")
            #expect(rest.status == 400 && Self.problemType(rest) == "urn:fencegate:problem:bad-request")
            let redfish = await Self.respond("GET", "/redfish/v1/Systems/\(name)")
            #expect(redfish.status == 404 && Self.redfishCode(redfish) == "Base.1.8.ResourceMissingAtURI")
        }
        let fits = String(repeating: "a", count: DomainTarget.maximumBytes)
        #expect(Self.json(await Self.respond("GET", "/domains/\(fits)")) as? String == fits)
    }

    @Test("authentication runs before the handler; what a request is about is read first")
    func authentication() async {
        for path in ["/private", "/domains/pcmk1/off"] {
            let response = await Self.respond(path.hasSuffix("off") ? "POST" : "GET", path)
            #expect(response.status == 401 && Self.problemType(response) == "urn:fencegate:problem:unauthorized")
            #expect(Self.header(response, "WWW-Authenticate") == "Bearer realm=\"fencegate\"")
        }
        let redfish = await Self.respond("GET", "/redfish/v1/Private")
        #expect(redfish.status == 401 && Self.redfishCode(redfish) == "Base.1.8.NoValidSession")
        #expect(Self.header(redfish, "WWW-Authenticate")?.hasPrefix("Basic realm=") == true)
        // A target that cannot name a domain is refused before the credentials are looked at.
        let long = String(repeating: "a", count: DomainTarget.maximumBytes + 1)
        #expect(await Self.respond("POST", "/domains/\(long)/off").status == 400)
    }

    @Test("an error the mount does not know is a 500, its details only in the log")
    func internalError() async {
        for path in ["/failing", "/undeclared"] {
            let response = await Self.respond("GET", path)
            #expect(response.status == 500 && Self.problemType(response) == "urn:fencegate:problem:internal-error")
            #expect(!String(decoding: response.body, as: UTF8.self).contains("nothing"))
        }
    }

    @Test("the API's table: only health and Redfish's service root are open; every domain route audits refusals")
    func apiRoutes() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let routes = api.api.routes.map {
                ("\($0.route.method.rawValue) \($0.prefix)\($0.route.pattern)", $0.route.access)
            }
            #expect(
                routes.filter { $0.1 == .open }.map(\.0) == ["GET /healthz", "GET /redfish/", "GET /redfish/v1"]
            )
            #expect(
                routes.filter { $0.1 == .tokenAboutOneDomain }.map(\.0) == [
                    "GET /domains/{domain}", "POST /domains/{domain}/off", "POST /domains/{domain}/on",
                    "POST /domains/{domain}/reboot", "GET /redfish/v1/Systems/{id}",
                    "POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset",
                ]
            )
        }
    }

    @Test("over the wire, HEAD gets the GET's header fields and Content-Length, and no body")
    func headOnTheWire() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            for path in ["/domains/pcmk1", "/redfish/v1/"] {
                let get = try await api.curl("GET", path, token: api.ops)
                let head = try await api.curl("HEAD", path, token: api.ops, arguments: ["-I"])
                // With -I, curl writes the header fields where the body would go: nothing may follow them.
                #expect(head.status == 200 && head.text.hasSuffix("\r\n\r\n") && !head.text.contains("{"), "\(path)")
                #expect(head.headers["content-length"] == String(get.body.count), "\(path)")
                #expect(head.headers["content-type"] == get.headers["content-type"], "\(path)")
            }
        }
    }
}
