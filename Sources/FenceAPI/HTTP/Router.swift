import Logging

/// One route table for every HTTP front end: the REST API at the root, Redfish mounted at `/redfish` beside it.
///
/// What every route gets from it, done once here:
/// - The path is split at `/` and each segment percent-decoded on its own, so `%2F` stays inside its segment.
///   A request that cannot be read (not UTF-8, a malformed escape or an encoded NUL) is a 400 from the root.
/// - The mount is the one whose prefix the decoded segments start with (the root if none). From there on, the
///   mount's error type answers: an empty segment (`//`, a trailing `/` unless the mount allows one) or a dot
///   segment names no route (404), as does a path that matches no pattern; a path that matches with another
///   method is a 405 with `Allow`.
/// - HEAD runs the GET route. The response keeps its body, so that the server announces the length a GET
///   gets (RFC 9110 §8.6); libmicrohttpd sends no body in an answer to HEAD.
/// - A path parameter's own limits (a domain name's length, say) are checked where the handler reads it
///   (`PathParameters.require(_:as:)`), and answered in the mount's error type.
struct Router: Sendable {
    private let root: RouteGroup
    /// Mounted groups with their decoded prefix segments, longest prefix first.
    private var mounts: [(prefix: [String], group: RouteGroup)] = []
    private let logger: Logger

    /// A router whose root group answers every path no mount claims, and every request it cannot read.
    init(root: RouteGroup, logger: Logger) {
        self.root = root
        self.logger = logger
    }

    /// Serves `group` under `prefix` (e.g. `/redfish`): its patterns are matched against the rest of the path.
    mutating func mount(_ group: RouteGroup, at prefix: String) {
        let segments = RoutePattern(prefix).segments.map { segment in
            guard case .literal(let literal) = segment else {
                preconditionFailure("a mount prefix is literal: \(prefix)")
            }
            return literal
        }
        precondition(!segments.isEmpty, "the root group is the router's own: \(prefix)")
        mounts.append((segments, group))
        mounts.sort { $0.prefix.count > $1.prefix.count }
    }

    /// The routes of every group, each with the path prefix it is mounted at (`""` for the root).
    var routes: [(prefix: String, route: Route)] {
        root.routes.map { ("", $0) }
            + mounts.flatMap { mount in mount.group.routes.map { ("/" + mount.prefix.joined(separator: "/"), $0) } }
    }

    /// Answers one request. Never throws: every failure becomes the answer its mount gives.
    func respond(to request: HTTPRequest) async -> HTTPResponse {
        guard request.isValidUTF8 else {
            return root.errors.unreadableRequest("the path, a header or a query argument is not UTF-8").response
        }
        guard let decoded = request.pathSegments else {
            return root.errors.unreadableRequest("the path has a malformed escape, an encoded NUL, or is not UTF-8")
                .response
        }
        // "/a/b" decodes to ["", "a", "b"].
        guard request.path.hasPrefix("/") else { return root.errors.notFound(request.path).response }
        let path = decoded.dropFirst()
        let (prefix, group) = mounts.first { path.starts(with: $0.prefix) } ?? ([], root)
        var segments = path.dropFirst(prefix.count)
        if group.allowsTrailingSlash, segments.last == "" { segments = segments.dropLast() }
        guard !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            return group.errors.notFound(request.path).response
        }

        let method = request.method == "HEAD" ? HTTPMethod.get.rawValue : request.method
        var allowed: [HTTPMethod] = []
        for route in group.routes {
            guard let parameters = route.pattern.match(segments) else { continue }
            guard route.method.rawValue == method else {
                allowed.append(route.method)
                continue
            }
            do {
                return try await route.handler(request, PathParameters(parameters))
            } catch {
                var logger = self.logger
                if let requestID = request.requestID { logger[metadataKey: "request.id"] = "\(requestID)" }
                return group.response(to: error, answering: request, logger: logger)
            }
        }
        guard allowed.isEmpty else {
            let names = allowed.flatMap { $0 == .get ? ["GET", "HEAD"] : [$0.rawValue] }
            return group.errors.methodNotAllowed(request.method, allowed: names).response
        }
        return group.errors.notFound(request.path).response
    }
}
