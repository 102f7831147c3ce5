import FoundationEssentials
import Glibc

extension Socket {
    /// A UDP socket that sends IPv4 multicast out of `interface` (TTL 2, as fence_xvm uses), loopback off.
    static func multicastSender(interface: String) throws -> Socket {
        let interfaceIndex = if_nametoindex(interface)
        guard interfaceIndex != 0 else { throw SocketError.errno("if_nametoindex(\(interface))") }
        let socket = try Socket(family: .ipv4, stream: false)
        var request = ip_mreqn()
        request.imr_ifindex = Int32(interfaceIndex)
        try socket.setOption(Int32(IPPROTO_IP), IP_MULTICAST_IF, request, "setsockopt(IP_MULTICAST_IF \(interface))")
        try socket.setOption(Int32(IPPROTO_IP), IP_MULTICAST_TTL, UInt8(2), "setsockopt(IP_MULTICAST_TTL)")
        try socket.setOption(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, UInt8(0), "setsockopt(IP_MULTICAST_LOOP)")
        return socket
    }

    /// A UDP socket that sends IPv6 multicast out of `interface` (hop limit 2, as fence_xvm uses), loopback off.
    static func multicastSenderIPv6(interface: String) throws -> Socket {
        let interfaceIndex = if_nametoindex(interface)
        guard interfaceIndex != 0 else { throw SocketError.errno("if_nametoindex(\(interface))") }
        let socket = try Socket(family: .ipv6, stream: false)
        try socket.setOption(
            Int32(IPPROTO_IPV6),
            IPV6_MULTICAST_IF,
            UInt32(interfaceIndex),
            "setsockopt(IPV6_MULTICAST_IF \(interface))"
        )
        try socket.setOption(Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, Int32(2), "setsockopt(IPV6_MULTICAST_HOPS)")
        try socket.setOption(Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP, UInt32(0), "setsockopt(IPV6_MULTICAST_LOOP)")
        return socket
    }
}
