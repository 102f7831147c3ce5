import FoundationEssentials
import Locking
import Store

/// Bounds how fast one kind of row can grow the audit log: refusals (a peer needs no credentials to be
/// refused) and reads (a read token or a guest may ask as often as it likes).
///
/// Per client (a front end and a network address or requester) and per window (a minute by default), the
/// first `perClient` rows are written one each, and at most `overall` rows for all clients together. Rows
/// beyond that are counted, and when the client's window ends one summary row records how many there were,
/// between when and when, and the last one. At most `maximumClients` clients are tracked at once; others
/// share one entry. So a flood writes at most `overall + maximumClients + 1` rows per window, and every
/// request is accounted for in a row.
final class AuditRowLimiter: Sendable {
    /// The limits; documented in the README ("Refusals").
    struct Limits: Sendable, Equatable {
        var perClient = 10
        var overall = 60
        var window: Duration = .seconds(60)
        var maximumClients = 64
    }

    /// Refusals of one client that did not get a row of their own.
    struct Summary: Sendable {
        let client: String
        let count: Int
        let first: Date
        let last: Date
        /// The last request counted (its intent row), its result, and why it was refused or what it answered.
        let intent: AuditIntent
        let result: AuditResult
        let reason: String
    }

    enum Decision {
        /// Write a row for this refusal.
        case record
        /// Count it; if `summaryDue` is set, the caller schedules `takeSummary(client: key, window:)` then
        /// (`key` is the client's entry: its own, or the one that clients beyond `maximumClients` share).
        case count(key: String, summaryDue: ContinuousClock.Instant?, window: ContinuousClock.Instant)
    }

    private struct ClientWindow {
        let start: ContinuousClock.Instant
        var recorded = 0
        var unrecorded = 0
        var first: Date?
        var last: Date?
        var lastIntent: AuditIntent?
        var lastResult = AuditResult.refused
        var lastReason = ""
    }

    private struct State {
        var overallStart: ContinuousClock.Instant
        var overallRecorded = 0
        var clients: [String: ClientWindow] = [:]
    }

    /// The key for refusals from clients beyond `maximumClients`.
    static let otherClients = "other clients"

    /// What is limited, for the summary rows and log lines: `refusal`, `read`.
    let kind: String
    let limits: Limits
    private let state: Locked<State>
    private let clock = ContinuousClock()

    /// The error code of this limiter's summary rows: `refusals_not_recorded`, `reads_not_recorded`.
    var summaryErrorCode: String { "\(kind)s_not_recorded" }

    init(kind: String, limits: Limits = Limits()) {
        self.kind = kind
        self.limits = limits
        state = Locked(State(overallStart: clock.now))
    }

    /// Decides whether `intent` from `client` gets a row of its own; returns also any summary of an
    /// earlier window of that client that has ended and is still to be written.
    func admit(
        _ intent: AuditIntent,
        result: AuditResult,
        reason: String,
        client: String
    ) -> (Decision, Summary?) {
        let now = clock.now
        let window = limits.window
        return state.withLock { state in
            if now - state.overallStart >= window {
                state.overallStart = now
                state.overallRecorded = 0
            }
            var ended: Summary?
            var key = client
            if let existing = state.clients[key], now - existing.start >= window {
                ended = Self.summary(of: existing, client: key)
                state.clients[key] = nil
            }
            if state.clients[key] == nil, state.clients.count >= limits.maximumClients {
                // Forget clients whose window ended with nothing left to summarize, then fall back to one entry.
                state.clients = state.clients.filter { now - $0.value.start < window || $0.value.unrecorded > 0 }
                if state.clients.count >= limits.maximumClients { key = Self.otherClients }
            }
            var entry = state.clients[key] ?? ClientWindow(start: now)
            if key != client, now - entry.start >= window {
                ended = ended ?? Self.summary(of: entry, client: key)
                entry = ClientWindow(start: now)
            }
            defer { state.clients[key] = entry }
            if entry.recorded < limits.perClient, state.overallRecorded < limits.overall {
                entry.recorded += 1
                state.overallRecorded += 1
                return (.record, ended)
            }
            let date = Date()
            entry.unrecorded += 1
            entry.first = entry.first ?? date
            entry.last = date
            entry.lastIntent = intent
            entry.lastResult = result
            entry.lastReason = reason
            let due = entry.unrecorded == 1 ? entry.start + window : nil
            return (.count(key: key, summaryDue: due, window: entry.start), ended)
        }
    }

    /// The summary of `client`'s window that began at `window`, if it is still to be written (it is taken:
    /// a second call returns nil).
    func takeSummary(client: String, window: ContinuousClock.Instant) -> Summary? {
        state.withLock { state in
            guard let entry = state.clients[client], entry.start == window, entry.unrecorded > 0 else { return nil }
            state.clients[client] = nil
            return Self.summary(of: entry, client: client)
        }
    }

    /// Every summary still to be written, taken (at shutdown).
    func takeAllSummaries() -> [Summary] {
        state.withLock { state in
            defer { state.clients = state.clients.filter { $0.value.unrecorded == 0 } }
            return state.clients.compactMap { Self.summary(of: $0.value, client: $0.key) }
        }
    }

    private static func summary(of entry: ClientWindow, client: String) -> Summary? {
        guard entry.unrecorded > 0, let first = entry.first, let last = entry.last, let intent = entry.lastIntent
        else {
            return nil
        }
        return Summary(
            client: client,
            count: entry.unrecorded,
            first: first,
            last: last,
            intent: intent,
            result: entry.lastResult,
            reason: entry.lastReason
        )
    }
}
