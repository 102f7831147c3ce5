import FoundationEssentials
import Glibc

extension Socket {
    /// A UDP socket bound to the wildcard address on `port` (so, as with fence_virtd, unicast to the port is
    /// accepted too) and joined to `group` on `interface` (nil: the interface the kernel's routes choose).
    /// It receives only the datagrams of its own group (not those of groups other sockets joined), and with
    /// an interface only what arrives on it (Linux would otherwise deliver a group's datagrams from every
    /// interface), so that gateways on several bridges each hear only their own guests.
    static func multicastReceiver(group: SocketAddress, interface: String?) throws -> Socket {
        var interfaceIndex: UInt32 = 0
        if let interface {
            interfaceIndex = if_nametoindex(interface)
            guard interfaceIndex != 0 else { throw SocketError.errno("if_nametoindex(\(interface))") }
        }
        let socket = try Socket(family: group.family, stream: false)
        try socket.setOption(SOL_SOCKET, SO_REUSEADDR, Int32(1), "setsockopt(SO_REUSEADDR)")
        if interfaceIndex != 0 {
            // IPv6 delivers a group's datagrams to every socket that joined it, on whichever interface: only
            // binding to the device keeps another bridge's guests out (IPv4 gets the same, and unicast too).
            try socket.setOption(SOL_SOCKET, SO_BINDTOIFINDEX, Int32(interfaceIndex), "bind to \(interface ?? "")")
        }
        switch group.family {
        case .ipv4:
            try socket.bind(SocketAddress(ipv4: [0, 0, 0, 0], port: group.port))
            var request = ip_mreqn()
            withUnsafeMutableBytes(of: &request.imr_multiaddr) { $0.copyBytes(from: group.bytes) }
            request.imr_ifindex = Int32(interfaceIndex)
            try socket.setOption(Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, request, "join \(group.host)")
            try socket.setOption(Int32(IPPROTO_IP), IP_MULTICAST_ALL, Int32(0), "setsockopt(IP_MULTICAST_ALL)")
        case .ipv6:
            try socket.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1), "setsockopt(IPV6_V6ONLY)")
            try socket.bind(SocketAddress(ipv6: [UInt8](repeating: 0, count: 16), port: group.port))
            var request = ipv6_mreq()
            withUnsafeMutableBytes(of: &request.ipv6mr_multiaddr) { $0.copyBytes(from: group.bytes) }
            request.ipv6mr_interface = interfaceIndex
            try socket.setOption(Int32(IPPROTO_IPV6), IPV6_ADD_MEMBERSHIP, request, "join \(group.host)")
            try socket.setOption(
                Int32(IPPROTO_IPV6),
                IPV6_MULTICAST_ALL,
                Int32(0),
                "setsockopt(IPV6_MULTICAST_ALL)"
            )
        }
        return socket
    }

    /// A TCP socket listening on `address`.
    static func listener(on address: SocketAddress) throws -> Socket {
        let socket = try Socket(family: address.family, stream: true)
        try socket.setOption(SOL_SOCKET, SO_REUSEADDR, Int32(1), "setsockopt(SO_REUSEADDR)")
        if address.family == .ipv6 {
            try socket.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1), "setsockopt(IPV6_V6ONLY)")
        }
        try socket.bind(address)
        try socket.listen()
        return socket
    }

    /// A TCP connection to `address` within `timeout`, with keepalive on.
    static func connection(to address: SocketAddress, timeout: Duration) throws -> Socket {
        let socket = try Socket(family: address.family, stream: true)
        try socket.setOption(SOL_SOCKET, SO_KEEPALIVE, Int32(1), "setsockopt(SO_KEEPALIVE)")
        try socket.connect(to: address, timeout: timeout)
        return socket
    }
}
