import FoundationEssentials
import Locking
import Logging
public import Store

extension FenceService {
    // MARK: - Credentials (one rule for every front end)

    /// Checks the API token a front end's request presents: `Authorization: Bearer …`, or for Redfish the
    /// password of HTTP Basic, whose user must then be the token's name.
    ///
    /// A failure is logged at debug level only (a peer needs no credentials to cause one), and audited as a
    /// refusal when the request is about one domain (`about`: a fence action, or a read of one domain), within
    /// the limits on unauthenticated refusals (`Configuration.refusalsPerClientPerMinute`).
    ///
    /// - Parameters:
    ///   - user: HTTP Basic's user name, which must equal the token's name; nil for a bearer token.
    ///   - origin: where the request came from, for the log.
    ///   - request: the request, when it is about one domain; its refusal is then audited.
    /// - Throws: `.unauthenticated` (missing, malformed, unknown or revoked credentials: HTTP 401);
    ///   `.auditUnavailable` if the tokens cannot be read.
    public func authenticate(
        _ presented: String?,
        user: String? = nil,
        origin: RequestOrigin,
        about request: FenceRequest? = nil
    ) async throws(FenceError) -> AccessToken {
        let failure: AuthenticationFailure
        do {
            let token = try tokens.authenticate(presented)
            guard user == nil || user == token.name else { throw AuthenticationFailure.unknown }
            if token.scope == .fence, let address = origin.clientAddress { credentialedClients.note(address) }
            return token
        } catch let error as AuthenticationFailure {
            failure = error
        } catch {
            logger.error("could not check credentials", metadata: ["error": "\(error)"])
            throw .auditUnavailable(reason: "\(error)")
        }
        if let request {
            await recordRefusal(request, reason: "authentication failed: \(failure)")
        } else {
            logger.debug(
                "authentication failed",
                metadata: [
                    "reason": "\(failure)", "fence.origin": "\(origin.frontEnd.rawValue)",
                    "peer.address": "\(origin.clientAddress ?? "-")",
                ]
            )
        }
        throw .unauthenticated(reason: failure.description)
    }

    /// Learns again, from the audit log, the client addresses that presented a valid fence token within
    /// `CredentialedClients.memory` (for the HTTP server's reserve after a restart). A failure is logged: the
    /// addresses are then learnt as their agents authenticate.
    public func restoreCredentialedClients() async {
        let now = (date: Date(), instant: ContinuousClock.now)
        do {
            let found = try await store.clientAddressesWithFenceTokens(
                since: now.date.addingTimeInterval(-CredentialedClients.memory.seconds),
                limit: CredentialedClients.capacity
            )
            for (address, at) in found.reversed() {
                credentialedClients.note(address, at: now.instant - .seconds(now.date.timeIntervalSince(at)))
            }
            logger.debug("client addresses with fence tokens restored", metadata: ["http.clients": "\(found.count)"])
        } catch {
            logger.warning(
                "cannot read which clients presented fence tokens lately",
                metadata: ["error": "\(error)"]
            )
        }
    }

    // MARK: - The audit log, as a credential may see it (not audited)

    /// A page of the audit log, newest first, as `token` may see it: a token limited to some domains sees only
    /// their operations.
    public func operations(_ query: AuditQuery, visibleTo token: AccessToken) async throws(FenceError) -> AuditPage {
        var query = query
        if !token.domainPatterns.isEmpty { query.domainPatterns = token.domainPatterns }
        return try await queryingAuditLog { reader throws(AuditStoreError) in try await reader.query(query) }
    }

    /// Cluster mode: a page of every host's audit log merged, newest first, as `token` may see it; nil
    /// outside cluster mode. Hosts that could not answer are named in the page.
    public func clusterOperations(
        _ query: AuditQuery,
        after cursor: ClusterAuditCursor?,
        visibleTo token: AccessToken
    ) async -> ClusterAuditPage? {
        guard let router else { return nil }
        var query = query
        if !token.domainPatterns.isEmpty { query.domainPatterns = token.domainPatterns }
        query.limit = min(query.limit, ClusterAuditPage.maximumLimit)
        query.cursor = nil
        return await router.auditPage(query, after: cursor, deadline: .now + .seconds(5))
    }

    /// Cluster mode: this host's part of a merged audit page, for another host that asked (it scoped the
    /// query to what its requester may see).
    public func operationsForCluster(_ query: AuditQuery) async throws(FenceError) -> AuditPage {
        try await queryingAuditLog { reader throws(AuditStoreError) in try await reader.query(query) }
    }

    /// The operation with `id`, or nil if there is none or `token` may not see it.
    public func operation(id: Int64, visibleTo token: AccessToken) async throws(FenceError) -> AuditRecord? {
        let record = try await queryingAuditLog { reader throws(AuditStoreError) in try await reader.operation(id: id) }
        guard let record, token.domainPatterns.isEmpty || record.domainName.map(token.permits(domainNamed:)) == true
        else { return nil }
        return record
    }

    /// Runs `body` with the audit log's reader (opened on first use). A query stopped at its time limit
    /// becomes `.auditQueryStopped`, any other failure `.auditUnavailable`.
    private func queryingAuditLog<T: Sendable>(
        _ body: (AuditReader) async throws(AuditStoreError) -> T
    ) async throws(FenceError) -> T {
        do throws(AuditStoreError) {
            let reader = try auditReader.withLock { reader throws(AuditStoreError) in
                if let reader { return reader }
                let opened = try store.reader(timeLimit: configuration.auditQueryTimeLimit)
                reader = opened
                return opened
            }
            return try await body(reader)
        } catch {
            if case .queryStopped(let limit) = error { throw .auditQueryStopped(after: limit) }
            throw .auditUnavailable(reason: "\(error)")
        }
    }
}
