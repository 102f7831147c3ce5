internal import CLibvirt

/// A domain's run state, as libvirt reports it (`virDomainState`).
public enum DomainState: String, Sendable, CaseIterable, Codable {
    case noState = "no-state"
    case running
    case blocked
    case paused
    case shuttingDown = "shutting-down"
    case shutOff = "shut-off"
    case crashed
    case suspended = "pm-suspended"

    /// Maps libvirt's raw state number; unknown future values read as `noState`.
    init(libvirtState raw: Int32) {
        switch UInt32(bitPattern: raw) {
        case VIR_DOMAIN_RUNNING.rawValue: self = .running
        case VIR_DOMAIN_BLOCKED.rawValue: self = .blocked
        case VIR_DOMAIN_PAUSED.rawValue: self = .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: self = .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue: self = .shutOff
        case VIR_DOMAIN_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: self = .suspended
        default: self = .noState
        }
    }

    /// libvirt's number for this state (the byte fence_xvm's host list carries).
    public var libvirtValue: UInt8 {
        switch self {
        case .noState: return UInt8(VIR_DOMAIN_NOSTATE.rawValue)
        case .running: return UInt8(VIR_DOMAIN_RUNNING.rawValue)
        case .blocked: return UInt8(VIR_DOMAIN_BLOCKED.rawValue)
        case .paused: return UInt8(VIR_DOMAIN_PAUSED.rawValue)
        case .shuttingDown: return UInt8(VIR_DOMAIN_SHUTDOWN.rawValue)
        case .shutOff: return UInt8(VIR_DOMAIN_SHUTOFF.rawValue)
        case .crashed: return UInt8(VIR_DOMAIN_CRASHED.rawValue)
        case .suspended: return UInt8(VIR_DOMAIN_PMSUSPENDED.rawValue)
        }
    }

    /// Power as a fence agent sees it: only shut-off is off; every other state (paused, crashed…) is on.
    public var power: PowerState { self == .shutOff ? .off : .on }
}

/// On or off, the only distinction fencing cares about.
public enum PowerState: String, Sendable, Codable {
    case on
    case off
}
