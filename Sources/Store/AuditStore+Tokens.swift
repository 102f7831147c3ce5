public import FoundationEssentials

extension AuditStore {
    /// Stores a new token.
    /// - Throws: `AuditStoreError.tokenExists` if the name is taken (revoked tokens keep their names).
    public func insertToken(_ token: TokenRecord) throws {
        let existing = try wrap {
            try statement("SELECT 1 FROM tokens WHERE name = ?").rows([.text(token.name)])
        }
        guard existing.isEmpty else { throw AuditStoreError.tokenExists(token.name) }
        try wrap {
            try statement(
                """
                INSERT INTO tokens (name, public_id, secret_hash, scope, domain_patterns, created_at, from_domain)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """
            ).run([
                .text(token.name), .text(token.publicID), .text(token.secretHash), .text(token.scope),
                .text(token.domainPatterns.joined(separator: "\n")), .integer(token.createdAt.microsecondsSince1970),
                .optionalText(token.fromDomain),
            ])
        }
    }

    /// The token whose public id is `publicID`, revoked or not; nil if there is none.
    public func token(publicID: String) throws -> TokenRecord? {
        try wrap {
            try statement("SELECT \(Self.tokenColumns) FROM tokens WHERE public_id = ?").rows([.text(publicID)])
                .first.map(Self.tokenRecord)
        }
    }

    /// Every token, oldest first.
    public func tokens() throws -> [TokenRecord] {
        try wrap {
            try statement("SELECT \(Self.tokenColumns) FROM tokens ORDER BY id").rows().map(Self.tokenRecord)
        }
    }

    /// Revokes the token named `name`.
    /// - Returns: false if no unrevoked token has that name.
    public func revokeToken(named name: String, at date: Date = Date()) throws -> Bool {
        try wrap {
            try statement("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
                .run([.integer(date.microsecondsSince1970), .text(name)])
            return database.changes == 1
        }
    }

    static let tokenColumns =
        "name, public_id, secret_hash, scope, domain_patterns, created_at, revoked_at, from_domain"

    static func tokenRecord(_ row: [SQLiteValue]) -> TokenRecord {
        let patterns = row[4].text ?? ""
        return TokenRecord(
            name: row[0].text ?? "",
            publicID: row[1].text ?? "",
            secretHash: row[2].text ?? "",
            scope: row[3].text ?? "read",
            domainPatterns: patterns.isEmpty ? [] : patterns.split(separator: "\n").map(String.init),
            createdAt: Date(microsecondsSince1970: row[5].integer ?? 0),
            revokedAt: row[6].integer.map(Date.init(microsecondsSince1970:)),
            fromDomain: row[7].text
        )
    }

    /// The client addresses that presented a valid token of scope `fence` over HTTP or Redfish since `since`
    /// (a row not refused, naming a token that is not revoked), latest first, at most `limit`, each with its
    /// latest request: to know the fence agents again after a restart.
    public func clientAddressesWithFenceTokens(since: Date, limit: Int) throws -> [(address: String, at: Date)] {
        try wrap {
            try statement(
                """
                SELECT client_address, MAX(requested_at) FROM operations
                WHERE source IN ('http', 'redfish') AND requested_at >= ? AND result != 'refused'
                    AND client_address IS NOT NULL
                    AND requester IN (SELECT name FROM tokens WHERE scope = 'fence' AND revoked_at IS NULL)
                GROUP BY client_address ORDER BY 2 DESC LIMIT ?
                """
            ).rows([.integer(since.microsecondsSince1970), .integer(Int64(limit))]).compactMap { row in
                guard let address = row[0].text, let at = row[1].integer else { return nil }
                return (address, Date(microsecondsSince1970: at))
            }
        }
    }
}
