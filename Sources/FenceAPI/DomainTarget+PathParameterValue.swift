import FenceCore

extension DomainTarget: PathParameterValue {
    /// A domain name or UUID from a path. One that cannot name a domain (empty, over `maximumBytes` bytes of
    /// UTF-8, or holding a control character) is refused before anything is looked up or recorded.
    init(pathParameter text: String) throws(InvalidPathParameter) {
        self.init(text)
        if let problem { throw InvalidPathParameter(reason: problem) }
    }
}
