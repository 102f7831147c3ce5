/// One HTTP request as the router sees it: decoded, copied out of libmicrohttpd, `Sendable`.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path, percent-decoded by libmicrohttpd, without the query.
    public var path: String
    /// Query arguments; for a repeated name, the first value. A name without `=` has an empty value.
    public var query: [String: String]
    /// Header fields with lower-cased names; for a repeated name, the first value.
    public var headers: [String: String]
    public var body: [UInt8]
    /// The peer's numeric address, e.g. `127.0.0.1` or `::1`.
    public var clientAddress: String?
    /// False if the path, a header or a query argument was not valid UTF-8.
    public var isValidUTF8: Bool

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = [], clientAddress: String? = nil, isValidUTF8: Bool = true
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.clientAddress = clientAddress
        self.isValidUTF8 = isValidUTF8
    }
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
