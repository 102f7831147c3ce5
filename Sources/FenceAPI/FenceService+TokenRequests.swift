import FenceCore

extension FenceService {
    /// `perform` for a request carrying an authenticated token, with the refusal it can still meet, the
    /// token's scope (a domain outside its patterns is answered as an unknown one), thrown as `refusal`: each
    /// front end's own 403.
    func perform(_ request: FenceRequest, refusedAs refusal: @autoclosure () -> any Error) async throws -> FenceOutcome
    {
        do {
            return try await perform(request)
        } catch {
            if case .refused = error { throw refusal() }
            throw error
        }
    }
}
