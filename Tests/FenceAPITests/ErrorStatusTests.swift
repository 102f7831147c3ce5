import FenceCore
import Testing

@testable import FenceAPI

@Suite("One status per fence-service error, in every HTTP front end")
struct ErrorStatusTests {
    /// One value of every `FenceError` case.
    static let errors: [FenceError] = [
        .domainNotFound(target: "web1"), .hypervisorUnavailable(uri: "qemu:///system", reason: "refused"),
        .auditUnavailable(reason: "disk full"), .auditQueryStopped(after: .seconds(5)),
        .timedOut(action: .off, target: "web1", after: .seconds(60)),
        .operationFailed(action: .off, target: "web1", reason: "libvirt said no"), .domainBusy(target: "web1"),
        .notRunning(action: .nmi, target: "web1"), .invalidTarget(reason: "empty"),
        .refused(target: "web1", reason: "scope read"), .unauthenticated(reason: "unknown token"),
        .requesterFenced(target: "web2", requester: "web1", operation: 7),
    ]

    @Test("the REST API's problem and Redfish's error answer each FenceError with the same status and Retry-After")
    func sameStatus() {
        #expect(Set(Self.errors.map(\.code)).count == Self.errors.count, "one value per case")
        for error in Self.errors {
            let problem = Problem(error).response
            let redfish = RedfishError(error).response
            #expect(problem.status == error.httpStatus && redfish.status == error.httpStatus, "\(error)")
            let retryAfter = { (response: HTTPResponse) in response.headers.contains { $0.0 == "Retry-After" } }
            #expect(retryAfter(problem) == retryAfter(redfish), "\(error)")
            #expect(retryAfter(problem) == (error.httpStatus == 503), "\(error)")
            let challenge = { (response: HTTPResponse) in response.headers.contains { $0.0 == "WWW-Authenticate" } }
            #expect(challenge(problem) == (error.httpStatus == 401) && challenge(redfish) == (error.httpStatus == 401))
        }
    }
}
