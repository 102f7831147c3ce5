import Locking
import Store

/// The tokens as last read from the audit database, kept while their generation stays the same.
///
/// Each check reads the generation on the calling thread (`TokenReader`): one integer in a short read
/// transaction, no hop to the store's queue. When another connection or process has created, revoked or
/// deleted a token since, the generation differs and every token is read again, so the check after a
/// committed revocation refuses the token.
final class TokenCache: Sendable {
    /// A token as checked: its digest's hex text as bytes, and the token it stands for.
    struct Entry: Sendable {
        let secretHash: [UInt8]
        let token: AccessToken
    }

    private struct State {
        /// Opened on first use, so that making `AccessTokens` costs nothing and cannot fail.
        var reader: TokenReader?
        /// The generation `byPublicID` was read at; nil before the first read, or when the database keeps
        /// no generation (then every check reads the tokens).
        var generation: Int64?
        var byPublicID: [String: Entry] = [:]
    }

    private let store: AuditStore
    private let state = Locked(State())

    init(store: AuditStore) {
        self.store = store
    }

    /// The token with `publicID`, revoked or not, as the database holds it now; nil if there is none.
    /// - Throws: `AuditStoreError` if the database cannot be read.
    func token(publicID: String) throws(AuditStoreError) -> Entry? {
        try state.withLock { state throws(AuditStoreError) in
            let reader: TokenReader
            if let opened = state.reader {
                reader = opened
            } else {
                reader = try store.tokenReader()
                state.reader = reader
            }
            let current = try reader.generation()
            if current == nil || current != state.generation {
                let (generation, records) = try reader.tokens()
                state.generation = generation
                state.byPublicID = Dictionary(
                    records.map {
                        ($0.publicID, Entry(secretHash: Array($0.secretHash.utf8), token: AccessTokens.token($0)))
                    },
                    uniquingKeysWith: { _, later in later }
                )
            }
            return state.byPublicID[publicID]
        }
    }
}
