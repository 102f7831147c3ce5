import FenceCore
import FoundationEssentials

/// fence_virtd's own configuration file (`/etc/fence_virt.conf`), read as fence_virtd reads it, so that
/// Fencegate can replace fence_virtd on a host without a change to the file or to any guest.
///
/// Supported: the `multicast` and `tcp` listeners (key_file, hash, auth, family, address, port, interface),
/// the `libvirt` backend (one `uri`), the `cpg` backend (cluster mode: `clusterName`, its `uri`), and
/// `groups`. The `serial` and `vsock` listeners are refused with an explanation; settings that only concern
/// fence_virtd's process (debug, foreground, module_path, wait_for_init) are reported as ignored.
public struct FenceVirtdConfiguration: Sendable {
    /// The listener fence_virtd would run (`fence_virtd { listener = …; }`).
    public enum Listener: String, Sendable {
        case multicast, tcp
    }

    public var listener: Listener
    /// `backends { libvirt { uri = …; } }` (or `cpg`'s), or nil when not set (fence_virtd then uses
    /// libvirt's default).
    public var libvirtURI: String?
    /// `backend = "cpg"`: the Fencegate cluster to join (`cpgClusterName`); nil for `libvirt`.
    public var clusterName: String?

    /// The cluster a `cpg` backend joins. Not fence_virtd's own group name: its messages and Fencegate's
    /// cannot be mixed, so hosts move from fence_virtd to Fencegate all at once.
    public static let cpgClusterName = "fencegate"
    /// The listener's `key_file` (default `/etc/cluster/fence_xvm.key`).
    public var keyFile: String
    /// Everything but the key, which the caller reads from `keyFile`.
    public var gateway: GatewayConfiguration
    /// Settings that were read but have no effect here, each with its line and why.
    public var ignored: [String]

    /// Reads and interprets the file at `path`.
    /// - Throws: `FenceVirtdConfigurationError`, naming the file and line.
    public init(contentsOf path: String) throws(FenceVirtdConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw FenceVirtdConfigurationError(
                path: path,
                line: nil,
                message: "cannot read it: \(fileErrorText(error))"
            )
        }
        try self.init(text: text, path: path)
    }

    /// Parses and interprets `text`; `path` only names it in errors.
    public init(text: String, path: String) throws(FenceVirtdConfigurationError) {
        let file: SimpleConfig
        do throws(SimpleConfigError) {
            file = try SimpleConfig(parsing: text)
        } catch {
            throw FenceVirtdConfigurationError(path: path, line: error.line, message: error.message)
        }
        try self.init(file, path: path)
    }

    /// Interprets a parsed file; `path` only names it in errors.
    public init(_ file: SimpleConfig, path: String) throws(FenceVirtdConfigurationError) {
        var reader = SectionReader(path: path)
        let root = file.root
        guard let daemon = try reader.onlyBlock("fence_virtd", in: root) else {
            throw reader.error(
                nil,
                "no 'fence_virtd { … }' section: it names the listener and the backend, as in fence_virt.conf(5)"
            )
        }
        guard let listenerSetting = try reader.single("listener", in: daemon) else {
            throw reader.error(
                daemon.line,
                "'fence_virtd' sets no listener: add listener = \"multicast\"; (or \"tcp\")"
            )
        }
        guard let backendSetting = try reader.single("backend", in: daemon) else {
            throw reader.error(daemon.line, "'fence_virtd' sets no backend: add backend = \"libvirt\";")
        }
        switch listenerSetting.value.lowercased() {
        case "multicast": listener = .multicast
        case "tcp": listener = .tcp
        case "serial":
            throw reader.error(
                listenerSetting.line,
                "the serial listener (VM serial ports and vmchannel) is not supported: guests can keep fence_xvm over "
                    + "multicast (listener = \"multicast\") or use fence_virt -T over TCP (listener = \"tcp\")"
            )
        case "vsock":
            throw reader.error(
                listenerSetting.line,
                "the vsock listener is not supported: use listener = \"multicast\" (fence_xvm) or \"tcp\" (fence_virt -T)"
            )
        default:
            throw reader.error(
                listenerSetting.line,
                "unknown listener \"\(listenerSetting.value)\": fence_virtd knows multicast, tcp, serial and vsock"
            )
        }
        let backend = backendSetting.value.lowercased()
        switch backend {
        case "libvirt": break
        case "cpg":
            // Cluster mode, which fences any domain of the hosts that run it, never by guess.
            clusterName = Self.cpgClusterName
        default:
            throw reader.error(
                backendSetting.line,
                "unknown backend \"\(backendSetting.value)\": Fencegate supports backend = \"libvirt\" and \"cpg\""
            )
        }
        for setting in daemon.assignments where !["listener", "backend"].contains(setting.name.lowercased()) {
            let name = setting.name.lowercased()
            let why =
                ["debug", "foreground", "module_path", "wait_for_init", "wait_for_backend"].contains(name)
                ? "it concerns fence_virtd's own process (use --log-level and systemd here)"
                : "fence_virtd does not know it either"
            reader.ignore(setting.line, "fence_virtd/\(setting.name)", why)
        }

        // The selected listener's block; the others are ignored, as fence_virtd ignores them.
        let listeners = try reader.onlyBlock("listeners", in: root)
        let settings = try reader.onlyBlock(listener.rawValue, in: listeners)
        for other in listeners?.blocks ?? [] where other.name.lowercased() != listener.rawValue {
            reader.ignore(other.line, "listeners/\(other.name)", "the listener in use is \(listener.rawValue)")
        }
        let known =
            ["key_file", "hash", "auth", "family", "address", "port"] + (listener == .multicast ? ["interface"] : [])
        for setting in settings?.assignments ?? [] where !known.contains(setting.name.lowercased()) {
            reader.ignore(
                setting.line,
                "listeners/\(listener.rawValue)/\(setting.name)",
                "the \(listener.rawValue) listener has no such setting"
            )
        }

        var gateway = GatewayConfiguration()
        keyFile =
            try reader.single("key_file", in: settings)?.value
            ?? GatewayConfiguration.defaultKeyFile
        gateway.minimumHash = try reader.hash("hash", in: settings) ?? .sha256
        gateway.auth = try reader.hash("auth", in: settings) ?? .sha256
        let familySetting = try reader.single("family", in: settings)
        let ipv6: Bool
        switch familySetting?.value.lowercased() {
        case nil, "ipv4": ipv6 = false
        case "ipv6": ipv6 = true
        case let other?: throw reader.error(familySetting?.line, "family \"\(other)\" is neither ipv4 nor ipv6")
        }
        let portSetting = try reader.single("port", in: settings)
        var port: UInt16 = 1229
        if let portSetting {
            guard let value = UInt16(portSetting.value), value > 0 else {
                throw reader.error(portSetting.line, "port \"\(portSetting.value)\" is not a port number (1 to 65535)")
            }
            port = value
        }
        let addressSetting = try reader.single("address", in: settings)
        switch listener {
        case .multicast:
            let group = addressSetting?.value ?? (ipv6 ? MulticastListenerConfiguration.defaultIPv6Group : "225.0.0.12")
            guard let address = SocketAddress(host: group, port: port), address.isMulticast else {
                throw reader.error(addressSetting?.line, "address \"\(group)\" is not a numeric multicast address")
            }
            guard (address.family == .ipv6) == ipv6 else {
                throw reader.error(
                    addressSetting?.line,
                    "address \"\(group)\" does not match family \(ipv6 ? "ipv6" : "ipv4")"
                )
            }
            let interface = try reader.single("interface", in: settings)?.value
            gateway.multicast = MulticastListenerConfiguration(group: group, port: port, interface: interface)
            gateway.tcp = nil
        case .tcp:
            let host = addressSetting?.value ?? (ipv6 ? "::1" : "127.0.0.1")
            guard let address = SocketAddress(host: host, port: port) else {
                throw reader.error(addressSetting?.line, "address \"\(host)\" is not a numeric IP address")
            }
            guard (address.family == .ipv6) == ipv6 else {
                throw reader.error(
                    addressSetting?.line,
                    "address \"\(host)\" does not match family \(ipv6 ? "ipv6" : "ipv4")"
                )
            }
            gateway.multicast = nil
            gateway.tcp = address
        }

        // The backend in use (libvirt or cpg): one URI.
        if let backends = try reader.onlyBlock("backends", in: root) {
            for other in backends.blocks where other.name.lowercased() != backend {
                reader.ignore(other.line, "backends/\(other.name)", "the backend in use is \(backend)")
            }
            if let block = try reader.onlyBlock(backend, in: backends) {
                libvirtURI = try reader.single("uri", in: block)?.value
                for setting in block.assignments where setting.name.lowercased() != "uri" {
                    if setting.name.lowercased().hasPrefix("uri") {
                        throw reader.error(
                            setting.line,
                            "\(setting.name): several libvirt URIs are not supported; Fencegate serves one hypervisor (uri)"
                        )
                    }
                    let why =
                        backend == "cpg" && setting.name.lowercased() == "name_mode"
                        ? "Fencegate takes a domain's name or UUID alike"
                        : "the \(backend) backend has no such setting"
                    reader.ignore(setting.line, "backends/\(backend)/\(setting.name)", why)
                }
            }
        }

        // Groups: any member (ip) may fence any domain of its group (uuid entries, names or UUIDs).
        var groups: [FenceGroups.Group] = []
        if let section = try reader.onlyBlock("groups", in: root) {
            for block in section.blocks {
                guard block.name.lowercased() == "group" else {
                    reader.ignore(block.line, "groups/\(block.name)", "only 'group' blocks are read there")
                    continue
                }
                var group = FenceGroups.Group(
                    name: try reader.single("name", in: block)?.value,
                    requesters: block.assignments(named: "ip").map(\.value),
                    domains: block.assignments(named: "uuid").map(\.value)
                )
                if group.name == nil { group.name = "unnamed-\(groups.count + 1)" }
                for setting in block.assignments where !["name", "ip", "uuid"].contains(setting.name.lowercased()) {
                    reader.ignore(setting.line, "groups/group/\(setting.name)", "a group has name, ip and uuid entries")
                }
                groups.append(group)
            }
        }
        gateway.groups = FenceGroups(groups)

        for block in root.blocks
        where !["fence_virtd", "listeners", "backends", "groups"].contains(block.name.lowercased()) {
            reader.ignore(block.line, block.name, "fence_virtd does not read this section")
        }
        for setting in root.assignments {
            reader.ignore(setting.line, setting.name, "fence_virtd reads no settings outside its sections")
        }
        self.gateway = gateway
        self.ignored = reader.ignored
    }
}

/// Why fence_virt.conf cannot be used, with the file and line.
public struct FenceVirtdConfigurationError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let line: Int?
    public let message: String

    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }
}

/// Reads sections and settings, with the checks every one of them gets: a setting or section given twice
/// is an error naming both lines (fence_virtd would silently take one).
private struct SectionReader {
    let path: String
    var ignored: [String] = []

    func error(_ line: Int?, _ message: String) -> FenceVirtdConfigurationError {
        FenceVirtdConfigurationError(path: path, line: line, message: message)
    }

    mutating func ignore(_ line: Int, _ what: String, _ why: String) {
        ignored.append("\(path):\(line): \(what) is ignored: \(why)")
    }

    func single(
        _ name: String,
        in block: SimpleConfig.Block?
    ) throws(FenceVirtdConfigurationError) -> SimpleConfig.Assignment? {
        guard let found = block?.assignments(named: name) else { return nil }
        if found.count > 1 {
            throw error(found[1].line, "\(name) is set twice (lines \(found[0].line) and \(found[1].line)); keep one")
        }
        return found.first
    }

    func onlyBlock(
        _ name: String,
        in block: SimpleConfig.Block?
    ) throws(FenceVirtdConfigurationError) -> SimpleConfig.Block? {
        guard let found = block?.blocks(named: name) else { return nil }
        if found.count > 1 {
            throw error(
                found[1].line,
                "section '\(name)' appears twice (lines \(found[0].line) and \(found[1].line)); merge them"
            )
        }
        return found.first
    }

    func hash(_ name: String, in block: SimpleConfig.Block?) throws(FenceVirtdConfigurationError) -> HashType? {
        guard let setting = try single(name, in: block) else { return nil }
        guard let type = HashType(name: setting.value.lowercased()) else {
            throw error(setting.line, "\(name) \"\(setting.value)\" is not one of none, sha1, sha256, sha512")
        }
        return type
    }
}
