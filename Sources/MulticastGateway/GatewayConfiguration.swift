public import FenceCore
import FoundationEssentials

/// Settings of the fence_xvm gateway; the defaults are fence_virtd's.
public struct GatewayConfiguration: Sendable {
    /// The multicast listener, or nil for none.
    public var multicast: MulticastListenerConfiguration? = MulticastListenerConfiguration()
    /// The TCP listener for `fence_virt -T`, or nil for none (the default: fence_virtd's tcp listener is opt-in).
    public var tcp: SocketAddress?
    /// The shared key: the key file's first 4096 bytes. Empty only with hash and auth `none`.
    public var key: [UInt8] = [] {
        didSet { keyDigest = KeyedDigest(key: key) }
    }
    /// `key`, hashed once for the signatures and challenge-responses that start with it.
    public private(set) var keyDigest = KeyedDigest(key: [])
    /// The weakest packet hash accepted (a stronger one always is).
    public var minimumHash: HashType = .sha256
    /// The challenge-response algorithm (not signalled in the packet: client and gateway must agree).
    public var auth: HashType = .sha256
    public var groups = FenceGroups()
    /// Connecting back to the client.
    public var connectTimeout: Duration = .seconds(5)
    /// The longest the exchange before a client has proved it holds the key may take, all of it (reading a
    /// TCP request, the challenge-response; a call back has `connectTimeout` more to connect), and the
    /// longest writing the answer may take.
    public var ioTimeout: Duration = .seconds(10)
    /// The most multicast call backs running at once (each one a connection and, while it connects or
    /// authenticates, a thread). Requests beyond are dropped; fence_xvm sends its request again.
    public var maximumCallbacks = 64
    /// The most call backs running at once to one address: replays of captured packets for a guest that
    /// does not answer (each holds its call back for `connectTimeout`) cannot take every call back.
    public var maximumCallbacksPerAddress = 8
    /// The most `fence_virt -T` connections open at once, and from one address.
    public var tcpMaximumConnections = 64
    public var tcpMaximumConnectionsPerAddress = 8
    /// How long an answered request's key suppresses copies of it.
    public var historyWindow: Duration = .seconds(10)

    public init() {}

    /// What is wrong with the listeners' limits, by option name without dashes (for messages), if anything.
    public static func limitProblem(
        tcpMaximumConnections: Int,
        tcpMaximumConnectionsPerAddress: Int,
        maximumCallbacks: Int
    ) -> (option: String, message: String)? {
        if !(1...65536).contains(tcpMaximumConnections) { return ("tcp-max-connections", "must be 1 to 65536") }
        if !(1...65536).contains(tcpMaximumConnectionsPerAddress) {
            return ("tcp-max-connections-per-address", "must be 1 to 65536")
        }
        if !(1...65536).contains(maximumCallbacks) { return ("max-callbacks", "must be 1 to 65536") }
        return nil
    }

    /// The default key file of fence_xvm and fence_virtd.
    public static let defaultKeyFile = "/etc/cluster/fence_xvm.key"
    /// fence_xvm and fence_virtd use at most this many bytes of the key file.
    public static let maximumKeyBytes = 4096
}

/// Where the multicast listener listens.
public struct MulticastListenerConfiguration: Sendable, Equatable {
    /// 225.0.0.12 (IPv4) or ff05::3:1 (IPv6) by default.
    public var group: String = "225.0.0.12"
    public var port: UInt16 = 1229
    /// Join the group on this interface only (e.g. the bridge `virbr0`), or on the default one if nil.
    public var interface: String?

    public init(group: String = "225.0.0.12", port: UInt16 = 1229, interface: String? = nil) {
        self.group = group
        self.port = port
        self.interface = interface
    }

    public static let defaultIPv6Group = "ff05::3:1"
}
