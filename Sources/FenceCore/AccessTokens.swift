public import FoundationEssentials
import Glibc
public import Store

/// What an API token may do.
public enum TokenScope: String, Sendable, CaseIterable, Codable {
    /// List domains, read their state, read the audit log.
    case read
    /// Everything `read` may, plus off, on and reboot.
    case fence
}

/// An API token as the front ends see it: who it names, and what it may touch.
public struct AccessToken: Sendable, Equatable {
    public var name: String
    public var scope: TokenScope
    /// Glob patterns (`*`, `?`) of domain names; empty means every domain.
    public var domainPatterns: [String]
    public var createdAt: Date
    public var revokedAt: Date?
    /// The domain (name or UUID) of the cluster node that holds the token, if given at creation: requests
    /// with it come from that domain, which fence-race arbitration needs to know.
    public var fromDomain: DomainTarget?

    /// True if the token may see and act on a domain with this name: its patterns match the name's
    /// Unicode scalars exactly (no case folding, no normalization), as libvirt compares names byte for byte.
    public func permits(domainNamed name: String) -> Bool {
        domainPatterns.isEmpty || domainPatterns.contains { globMatches($0, name) }
    }

    /// True if the token's scope allows `action`.
    public func permits(_ action: FenceAction) -> Bool {
        action == .status || scope == .fence
    }
}

extension AccessToken: AccessPolicy {
    /// A token's scope is checked first (whatever the domain); then its domain patterns against the resolved
    /// domain's exact name. A domain outside the patterns is concealed: answered as an unknown one.
    public func refusal(
        of request: FenceRequest,
        on domain: DomainInfo?,
        lookup: DomainLookup
    ) async throws(FenceError) -> AccessRefusal? {
        guard permits(request.action) else {
            return AccessRefusal(reason: "token '\(name)' has scope \(scope.rawValue)", concealsDomain: false)
        }
        if let domain, !permits(domainNamed: domain.name) {
            return AccessRefusal(reason: "domain '\(domain.name)' is outside token '\(name)'", concealsDomain: true)
        }
        return nil
    }

    public func lists(_ domain: DomainInfo, among all: [DomainInfo]) -> Bool {
        permits(domainNamed: domain.name)
    }
}

/// A newly created token and its secret text, which is shown once and never stored.
public struct IssuedToken: Sendable {
    public var token: AccessToken
    /// The bearer token to hand to the client: `fgt_<id>_<secret>`.
    public var secret: String
}

/// Why a presented token was not accepted. The description is for logs and the audit log; clients get a
/// generic answer.
public enum AuthenticationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    case missing
    case malformed
    case unknown
    case revoked(name: String)

    public var description: String {
        switch self {
        case .missing: return "no bearer token"
        case .malformed: return "malformed token"
        case .unknown: return "unknown token or wrong secret"
        case .revoked(let name): return "token '\(name)' is revoked"
        }
    }
}

/// Why a token could not be created or revoked.
public enum TokenManagementError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName(String)
    case invalidPattern(String)
    case exists(String)
    case notFound(String)
    /// Domain patterns were given, but every one is empty (`--domains ''` or `,`): a token for every domain
    /// must be asked for by giving none.
    case noPattern
    /// `--from` names no possible domain (empty, too long, control characters).
    case invalidDomain(String)

    public var description: String {
        switch self {
        case .invalidName(let name):
            return "invalid token name '\(name)': use 1 to 64 letters, digits, '.', '_' or '-'"
        case .invalidPattern(let pattern):
            return "invalid domain pattern '\(pattern)': use a domain name with * and ? wildcards"
        case .exists(let name):
            return "a token named '\(name)' exists already (names of revoked tokens are not reused)"
        case .notFound(let name):
            return "no active token named '\(name)'"
        case .invalidDomain(let domain):
            return
                "invalid domain '\(domain.escapingControlCharacters)' for --from: \(DomainTarget(domain).problem ?? "")"
        case .noPattern:
            return
                "no domain pattern given: name at least one domain pattern, or leave the domains out for a token that reaches every domain"
        }
    }
}

/// Creates, lists, revokes and checks API tokens, kept in the audit database.
///
/// A token is `fgt_<16 hex id>_<43 base64url secret>`: 256 random bits of secret. Only SHA-256 of the secret is
/// stored; checking a token is a constant-time comparison of digests against the tokens held in memory, after
/// reading the tokens' generation from the database on the calling thread (`TokenCache`): cheap enough for
/// every request, and a token created or revoked by any process counts from the next request on.
public struct AccessTokens: Sendable {
    public let store: AuditStore
    private let cache: TokenCache

    public init(store: AuditStore) {
        self.store = store
        self.cache = TokenCache(store: store)
    }

    /// Creates a token. The returned secret is the only copy.
    /// - Parameter fromDomain: the domain (name or UUID) of the cluster node that will use the token.
    public func create(
        name: String,
        scope: TokenScope,
        domainPatterns: [String],
        fromDomain: String? = nil
    ) async throws -> IssuedToken {
        if let fromDomain, DomainTarget(fromDomain).problem != nil {
            throw TokenManagementError.invalidDomain(fromDomain)
        }
        guard Self.isValidName(name) else { throw TokenManagementError.invalidName(name) }
        guard domainPatterns.isEmpty || domainPatterns.contains(where: { !$0.isEmpty }) else {
            throw TokenManagementError.noPattern
        }
        for pattern in domainPatterns where !Self.isValidPattern(pattern) {
            throw TokenManagementError.invalidPattern(pattern)
        }
        let publicID = try SecureRandom.bytes(count: 8).hexString
        let secret = base64URL(try SecureRandom.bytes(count: 32))
        let record = TokenRecord(
            name: name,
            publicID: publicID,
            secretHash: Self.digest(secret),
            scope: scope.rawValue,
            domainPatterns: domainPatterns,
            createdAt: Date(),
            fromDomain: fromDomain
        )
        do {
            try await store.insertToken(record)
        } catch AuditStoreError.tokenExists {
            throw TokenManagementError.exists(name)
        }
        return IssuedToken(token: Self.token(record), secret: "fgt_\(publicID)_\(secret)")
    }

    /// Every token, revoked ones included, oldest first.
    public func list() async throws -> [AccessToken] {
        try await store.tokens().map(Self.token)
    }

    /// Revokes a token; it is refused from the next request on.
    public func revoke(name: String) async throws {
        guard try await store.revokeToken(named: name) else { throw TokenManagementError.notFound(name) }
    }

    /// The token that `presented` (the text after `Bearer `) names, if its secret is right and it is not revoked.
    /// Runs on the calling thread: a short read of the database (`TokenCache`), never a wait for a write.
    /// - Throws: `AuthenticationFailure`, or `AuditStoreError` if the tokens cannot be read.
    public func authenticate(_ presented: String?) throws -> AccessToken {
        guard let presented, !presented.isEmpty else { throw AuthenticationFailure.missing }
        let parts = presented.utf8.split(separator: UInt8(ascii: "_"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].elementsEqual("fgt".utf8), parts[1].count == 16, parts[2].count == 43,
            parts[1].allSatisfy(isASCIIHexDigit)
        else { throw AuthenticationFailure.malformed }
        let presentedHash = Array(DigestAlgorithm.sha256.digest(Array(parts[2])).hexString.utf8)
        guard let known = try cache.token(publicID: String(decoding: parts[1], as: UTF8.self)) else {
            throw AuthenticationFailure.unknown
        }
        guard constantTimeEquals(presentedHash, known.secretHash) else { throw AuthenticationFailure.unknown }
        if known.token.revokedAt != nil { throw AuthenticationFailure.revoked(name: known.token.name) }
        return known.token
    }

    static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.count)
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || "._-".unicodeScalars.contains($0)
            }
    }

    static func isValidPattern(_ pattern: String) -> Bool {
        !pattern.isEmpty && pattern.utf8.count <= DomainTarget.maximumBytes && !pattern.containsControlCharacters
            && !pattern.unicodeScalars.contains { $0 == "[" || $0 == "]" }
    }

    private static func digest(_ secret: String) -> String {
        DigestAlgorithm.sha256.digest(Array(secret.utf8)).hexString
    }

    static func token(_ record: TokenRecord) -> AccessToken {
        AccessToken(
            name: record.name,
            scope: TokenScope(rawValue: record.scope) ?? .read,
            domainPatterns: record.domainPatterns,
            createdAt: record.createdAt,
            revokedAt: record.revokedAt,
            fromDomain: record.fromDomain.map { DomainTarget($0) }
        )
    }
}

private func isASCIIHexDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
}

/// Base64 with the URL-safe alphabet and no padding.
func base64URL(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
}

/// Glob matching with `*` (any run, also empty) and `?` (one character), case-sensitive, comparing Unicode
/// scalars exactly: the same as SQLite's GLOB for patterns without brackets, so the audit-log filter and this
/// check agree, and no two names libvirt tells apart (by their bytes) are confused.
func globMatches(_ pattern: String, _ text: String) -> Bool {
    let pattern = Array(pattern.unicodeScalars)
    let text = Array(text.unicodeScalars)
    var (p, t) = (0, 0)
    var star: Int?
    var starText = 0
    while t < text.count {
        if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
            p += 1
            t += 1
        } else if p < pattern.count, pattern[p] == "*" {
            star = p
            starText = t
            p += 1
        } else if let star {
            p = star + 1
            starText += 1
            t = starText
        } else {
            return false
        }
    }
    while p < pattern.count, pattern[p] == "*" { p += 1 }
    return p == pattern.count
}
