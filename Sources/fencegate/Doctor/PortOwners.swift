import FenceCore
import FoundationEssentials

/// Which processes have a local port bound, from /proc/net and /proc/PID/fd (complete as root).
enum PortOwners {
    enum Transport: String {
        case udp, tcp
    }

    /// A process holding the port: its PID and command name.
    struct Owner: Equatable {
        let pid: Int32
        let name: String
    }

    /// The processes with `port` bound (UDP) or listening (TCP), over IPv4 and IPv6. A socket whose owner
    /// cannot be found (another user's, without root) is reported with PID 0.
    static func owners(of port: UInt16, _ transport: Transport) -> [Owner] {
        var inodes: Set<String> = []
        for file in ["/proc/net/\(transport.rawValue)", "/proc/net/\(transport.rawValue)6"] {
            guard let table = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in table.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count > 9, let colon = columns[1].lastIndex(of: ":"),
                    UInt16(columns[1][columns[1].index(after: colon)...], radix: 16) == port
                else { continue }
                // TCP: only listening sockets (state 0A); UDP: any bound socket.
                if transport == .tcp && columns[3] != "0A" { continue }
                inodes.insert(String(columns[9]))
            }
        }
        guard !inodes.isEmpty else { return [] }
        var owners: [Owner] = []
        var found: Set<String> = []
        let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in processes {
            guard let pid = Int32(entry) else { continue }
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            var holds = false
            for descriptor in descriptors {
                guard
                    let target = try? FileManager.default.destinationOfSymbolicLink(
                        atPath: "/proc/\(pid)/fd/\(descriptor)"
                    ),
                    target.hasPrefix("socket:[")
                else { continue }
                let inode = String(target.dropFirst("socket:[".count).dropLast())
                if inodes.contains(inode) {
                    holds = true
                    found.insert(inode)
                }
            }
            if holds {
                let name =
                    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))
                    .map { String($0.trimmingWhitespace) } ?? "?"
                owners.append(Owner(pid: pid, name: name))
            }
        }
        if found.count < inodes.count { owners.append(Owner(pid: 0, name: "a process this user cannot see")) }
        return owners
    }
}
