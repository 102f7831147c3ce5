internal import CCorosync

/// A libcpg call that failed: the call and corosync's error.
public struct CPGError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    /// corosync's `cs_error_t`.
    public let code: UInt32

    init(_ operation: String, _ error: cs_error_t) {
        self.operation = operation
        self.code = error.rawValue
    }

    /// True for CS_ERR_LIBRARY and the like: corosync is not running or went away.
    public var meansCorosyncIsGone: Bool {
        [CS_ERR_LIBRARY.rawValue, CS_ERR_BAD_HANDLE.rawValue, CS_ERR_NOT_EXIST.rawValue].contains(code)
    }

    public var description: String {
        "\(operation): \(String(cString: cs_strerror(cs_error_t(rawValue: code))))"
    }
}

/// Runs a libcpg call; throws its error unless it returned CS_OK.
func cpgCall(_ operation: String, _ body: () -> cs_error_t) throws(CPGError) {
    let result = body()
    guard result == CS_OK else { throw CPGError(operation, result) }
}
