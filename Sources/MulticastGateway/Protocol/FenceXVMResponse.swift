import FenceCore

/// The result byte a fence_xvm client turns into its exit status (protocol doc §4.1).
public enum FenceXVMResult: UInt8, Sendable {
    case success = 0
    case failure = 1
    /// For `status`: the domain is off, or unknown.
    case off = 2
    /// Denied by groups.
    case permissionDenied = 3
    /// A host list follows.
    case hostList = 253
}

/// The host list stream: 0xFD, one 130-byte record per domain, a zero record, and a final byte.
enum HostList {
    static let recordSize = 130

    /// Encodes `domains` in order: name[64], uuid[64] (NUL-terminated, zero-filled), raw libvirt state, zero pad.
    static func encode(_ domains: [DomainInfo]) -> [UInt8] {
        var bytes: [UInt8] = [FenceXVMResult.hostList.rawValue]
        bytes.reserveCapacity(1 + (domains.count + 1) * recordSize + 1)
        for domain in domains {
            bytes += field(domain.name) + field(domain.uuid) + [domain.state.libvirtValue, 0]
        }
        bytes += [UInt8](repeating: 0, count: recordSize)
        bytes.append(FenceXVMResult.success.rawValue)
        return bytes
    }

    /// A 64-byte, NUL-terminated field: at most 63 bytes of text, cut at a character boundary.
    private static func field(_ text: String) -> [UInt8] {
        var utf8 = Array(text.utf8)
        if utf8.count > 63 {
            utf8 = Array(utf8.prefix(63))
            while let last = utf8.last, last & 0xC0 == 0x80 { utf8.removeLast() }
            if let last = utf8.last, last >= 0xC0 { utf8.removeLast() }
        }
        return utf8 + [UInt8](repeating: 0, count: 64 - utf8.count)
    }
}
