import FoundationEssentials

/// One HTTP request as the router sees it: decoded, copied out of libmicrohttpd, `Sendable`.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path as sent (still percent-encoded), without the query. See `pathSegments`.
    public var path: String
    /// Query arguments, percent-decoded; for a repeated name, the first value. A name without `=` has an
    /// empty value.
    public var query: [String: String]
    /// Header fields with lower-cased names; for a repeated name, the first value.
    public var headers: [String: String]
    public var body: [UInt8]
    /// The peer's numeric address, e.g. `127.0.0.1` or `::1`.
    public var clientAddress: String?
    /// False if the path, a header or a query argument was not valid UTF-8.
    public var isValidUTF8: Bool
    /// The server's id for this request (`RequestID`), in every log line about it.
    public var requestID: String?

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        body: [UInt8] = [],
        clientAddress: String? = nil,
        isValidUTF8: Bool = true,
        requestID: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.clientAddress = clientAddress
        self.isValidUTF8 = isValidUTF8
        self.requestID = requestID
    }
}

extension HTTPRequest {
    /// The path split at "/" and then each segment percent-decoded on its own, so "%2F" stays inside its
    /// segment. Empty segments are kept (a leading "/" gives a first empty one). Nil if an escape is malformed,
    /// encodes NUL (a name never holds one), or a segment is not UTF-8.
    public var pathSegments: [String]? {
        var segments: [String] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: false) {
            guard let segment = raw.percentDecoded, !segment.utf8.contains(0) else { return nil }
            segments.append(segment)
        }
        return segments
    }
}

/// A method a route answers. HEAD is not one: the router answers it with the GET route.
enum HTTPMethod: String, Sendable {
    case get = "GET"
    case post = "POST"
}

/// One HTTP response: status, header fields, body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
