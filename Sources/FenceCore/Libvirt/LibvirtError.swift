internal import CLibvirt

/// An error reported by libvirt: its code, the subsystem that raised it, its message, and the call that failed.
///
/// Built from libvirt's thread-local last error right after the failing call, on the same thread.
public struct LibvirtError: Error, Sendable, CustomStringConvertible {
    /// A libvirt error code (`virErrorNumber`); the ones we branch on have names.
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// `VIR_ERR_INTERNAL_ERROR`.
        public static let internalError = Code(rawValue: Int32(VIR_ERR_INTERNAL_ERROR.rawValue))
        /// `VIR_ERR_NO_SUPPORT`.
        public static let noSupport = Code(rawValue: Int32(VIR_ERR_NO_SUPPORT.rawValue))
        /// `VIR_ERR_NO_CONNECT`: cannot connect to the hypervisor.
        public static let noConnect = Code(rawValue: Int32(VIR_ERR_NO_CONNECT.rawValue))
        /// `VIR_ERR_INVALID_CONN`.
        public static let invalidConnection = Code(rawValue: Int32(VIR_ERR_INVALID_CONN.rawValue))
        /// `VIR_ERR_OPERATION_FAILED`.
        public static let operationFailed = Code(rawValue: Int32(VIR_ERR_OPERATION_FAILED.rawValue))
        /// `VIR_ERR_SYSTEM_ERROR`.
        public static let systemError = Code(rawValue: Int32(VIR_ERR_SYSTEM_ERROR.rawValue))
        /// `VIR_ERR_RPC`.
        public static let rpc = Code(rawValue: Int32(VIR_ERR_RPC.rawValue))
        /// `VIR_ERR_NO_DOMAIN`: no such domain.
        public static let noDomain = Code(rawValue: Int32(VIR_ERR_NO_DOMAIN.rawValue))
        /// `VIR_ERR_AUTH_FAILED`.
        public static let authFailed = Code(rawValue: Int32(VIR_ERR_AUTH_FAILED.rawValue))
        /// `VIR_ERR_OPERATION_INVALID`: not applicable in the domain's current state.
        public static let operationInvalid = Code(rawValue: Int32(VIR_ERR_OPERATION_INVALID.rawValue))
        /// `VIR_ERR_OPERATION_TIMEOUT`.
        public static let operationTimeout = Code(rawValue: Int32(VIR_ERR_OPERATION_TIMEOUT.rawValue))

        public static func ~= (pattern: Code, error: any Error) -> Bool {
            (error as? LibvirtError)?.code == pattern
        }
    }

    public let code: Code
    /// The libvirt subsystem (`virErrorDomain`) that raised the error, e.g. 7 for RPC, 12 for the test driver.
    public let subsystem: Int32
    public let message: String
    /// The C function that failed, e.g. `virDomainDestroy`.
    public let operation: String

    /// True if the error means the connection to the hypervisor is unusable (closed, unreachable, RPC failure).
    public var isConnectionFailure: Bool {
        switch code {
        case .noConnect, .invalidConnection, .rpc, .authFailed:
            return true
        case .systemError:
            return subsystem == Int32(VIR_FROM_RPC.rawValue) || subsystem == Int32(VIR_FROM_REMOTE.rawValue)
        default:
            return false
        }
    }

    public var description: String {
        "\(operation) failed: \(message) (libvirt error \(code.rawValue))"
    }

    package init(code: Code, subsystem: Int32, message: String, operation: String) {
        self.code = code
        self.subsystem = subsystem
        self.message = message
        self.operation = operation
    }

    /// Reads and clears this thread's last libvirt error. Call right after the failing call, with no `await` between.
    static func last(operation: String) -> LibvirtError {
        defer { virResetLastError() }
        guard let error = virGetLastError() else {
            return LibvirtError(
                code: .internalError,
                subsystem: 0,
                message: "unknown libvirt error",
                operation: operation
            )
        }
        let message = error.pointee.message.map { String(cString: $0) } ?? "no message"
        return LibvirtError(
            code: Code(rawValue: error.pointee.code),
            subsystem: error.pointee.domain,
            message: message,
            operation: operation
        )
    }
}
