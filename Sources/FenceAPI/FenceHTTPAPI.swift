public import FenceCore
public import Logging

/// The HTTP API: the REST API and, when enabled, the Redfish subset under `/redfish`, on one router.
///
/// It only translates: every fence action goes through `FenceService`, which audits it; refusals (401/403)
/// of requests about one domain are audited through the service too. The contract is `openapi.yaml`.
public final class FenceHTTPAPI: Sendable {
    private let router: Router
    private let responses: ResponseCounter
    private let logger: Logger

    /// - Parameter redfish: serve the Redfish subset under `/redfish` (HTTP Basic credentials: serve it over
    ///   HTTPS; `serve` insists unless plain HTTP is explicitly allowed).
    public init(service: FenceService, logger: Logger, redfish: Bool = false) {
        var router = Router(root: RESTAPI(service: service).routes, logger: logger)
        if redfish { router.mount(RedfishAPI(service: service).routes, at: "/redfish") }
        self.router = router
        self.responses = ResponseCounter(metrics: service.metrics)
        self.logger = logger
    }

    /// Answers one request. Never throws: every failure becomes an error response.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let response = await router.respond(to: request)
        responses.count(response.status)
        logger.debug(
            "http request",
            metadata: [
                "http.method": "\(request.method)", "http.path": "\(request.path)", "http.status": "\(response.status)",
                "peer.address": "\(request.clientAddress ?? "-")", "request.id": "\(request.requestID ?? "-")",
            ]
        )
        return response
    }

    /// Every route, with the path prefix of its mount, for tests.
    var routes: [(prefix: String, route: Route)] { router.routes }
}
