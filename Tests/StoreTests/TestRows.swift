import Foundation
import Store

/// An intent of `root` on the command line for `domain`, `seconds` after a fixed time.
func intent(_ domain: String, at seconds: Double, action: String = "off") -> AuditIntent {
    AuditIntent(
        source: "cli",
        requester: "root",
        clientAddress: nil,
        target: domain,
        domainName: domain,
        domainUUID: nil,
        action: action,
        requestedAt: Date(timeIntervalSince1970: 1_800_000_000 + seconds)
    )
}

/// A completion with `result`, finished now.
func completion(_ result: AuditResult = .success) -> AuditCompletion {
    AuditCompletion(result: result, powerState: "off", errorCode: nil, message: nil, finishedAt: Date())
}
