import ArgumentParser
import FenceCore
import FoundationEssentials
import Logging
import MulticastGateway

/// `serve` options of the fence_xvm gateway. Defaults are fence_virtd's; the listeners are opt-in.
struct GatewayOptions: ParsableArguments {
    @Flag(help: "Answer fence_xvm multicast requests (225.0.0.12:1229 unless changed below).")
    var multicast = false

    @Option(help: "Multicast group: IPv4 (default 225.0.0.12) or IPv6 (e.g. ff05::3:1, which selects IPv6).")
    var multicastAddress: String?

    @Option(help: "UDP port of the multicast listener (default 1229); fence_xvm calls back the same port number.")
    var multicastPort: UInt16?

    @Option(help: "Join the group on this interface only, e.g. the guests' bridge virbr0.")
    var multicastInterface: String?

    @Option(help: "Answer fence_virt -T on this TCP address[:port] (port 1229 by default), e.g. 127.0.0.1.")
    var tcpListen: String?

    @Option(
        help:
            "Most fence_virt -T connections open at once (more are closed at once; default \(GatewayConfiguration().tcpMaximumConnections))."
    )
    var tcpMaxConnections: Int?

    @Option(
        help:
            "Most fence_virt -T connections open at once from one address (default \(GatewayConfiguration().tcpMaximumConnectionsPerAddress))."
    )
    var tcpMaxConnectionsPerAddress: Int?

    @Option(
        help:
            "Most fence_xvm call backs running at once (more requests are dropped; fence_xvm sends again; default \(GatewayConfiguration().maximumCallbacks))."
    )
    var maxCallbacks: Int?

    @Option(
        help:
            "The shared key file (default \(GatewayConfiguration.defaultKeyFile)); its first 4096 bytes are the key (as fence_xvm reads it)."
    )
    var keyFile: String?

    @Option(
        help:
            "Weakest packet hash accepted: none, sha1, sha256 (the default), sha512 (stronger ones are always accepted)."
    )
    var hash: String?

    @Option(
        help: "Challenge-response algorithm: none, sha1, sha256 (the default), sha512 (must match the guests' auth)."
    )
    var auth: String?

    @Option(
        help: ArgumentHelp(
            "A group: which requesters (ip=) may fence which domains (domain=, names or UUIDs). Repeatable; none: all allowed.",
            valueName: "ip=A,B;domain=X,Y"
        )
    )
    var group: [String] = []

    var enabled: Bool { multicast || tcpListen != nil }

    /// The key file given, else fence_xvm's default.
    var keyFileOrDefault: String { keyFile ?? GatewayConfiguration.defaultKeyFile }

    /// The gateway options given, by name.
    var givenOptions: [String] {
        let given: [(String, Bool)] = [
            ("--multicast", multicast), ("--multicast-address", multicastAddress != nil),
            ("--multicast-port", multicastPort != nil), ("--multicast-interface", multicastInterface != nil),
            ("--tcp-listen", tcpListen != nil), ("--tcp-max-connections", tcpMaxConnections != nil),
            ("--tcp-max-connections-per-address", tcpMaxConnectionsPerAddress != nil),
            ("--max-callbacks", maxCallbacks != nil), ("--key-file", keyFile != nil), ("--hash", hash != nil),
            ("--auth", auth != nil), ("--group", !group.isEmpty),
        ]
        return given.filter(\.1).map(\.0)
    }

    func validate() throws {
        if let hash, HashType(name: hash) == nil {
            throw ValidationError("--hash must be none, sha1, sha256 or sha512")
        }
        if let auth, HashType(name: auth) == nil {
            throw ValidationError("--auth must be none, sha1, sha256 or sha512")
        }
        if let multicastAddress, SocketAddress(host: multicastAddress, port: multicastPort ?? 1229) == nil {
            throw ValidationError("--multicast-address must be a numeric IPv4 or IPv6 multicast address")
        }
        if let tcpListen, Self.tcpAddress(tcpListen) == nil {
            throw ValidationError("--tcp-listen must be a numeric address with an optional port, e.g. 127.0.0.1:1229")
        }
        for text in group { _ = try Self.parseGroup(text) }
        let configuration = try settings()
        if let problem = GatewayConfiguration.limitProblem(
            tcpMaximumConnections: configuration.tcpMaximumConnections,
            tcpMaximumConnectionsPerAddress: configuration.tcpMaximumConnectionsPerAddress,
            maximumCallbacks: configuration.maximumCallbacks
        ) {
            throw ValidationError("--" + problem.option + " " + problem.message)
        }
    }

    /// The gateway's settings from the options given (fence_virtd's defaults for the others), without the key.
    func settings() throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        let defaultListener = MulticastListenerConfiguration()
        configuration.multicast =
            multicast
            ? MulticastListenerConfiguration(
                group: multicastAddress ?? defaultListener.group,
                port: multicastPort ?? defaultListener.port,
                interface: multicastInterface
            )
            : nil
        configuration.tcp = tcpListen.flatMap(Self.tcpAddress)
        configuration.minimumHash = hash.flatMap(HashType.init(name:)) ?? configuration.minimumHash
        configuration.auth = auth.flatMap(HashType.init(name:)) ?? configuration.auth
        configuration.groups = FenceGroups(try group.map(Self.parseGroup))
        configuration.tcpMaximumConnections = tcpMaxConnections ?? configuration.tcpMaximumConnections
        configuration.tcpMaximumConnectionsPerAddress =
            tcpMaxConnectionsPerAddress ?? configuration.tcpMaximumConnectionsPerAddress
        configuration.maximumCallbacks = maxCallbacks ?? configuration.maximumCallbacks
        return configuration
    }

    /// Reads the key into `configuration` (its first 4096 bytes). The key is needed unless both hash and auth
    /// are none; it is loaded whenever it can be read, so that (unlike fence_virtd with none/none) correctly
    /// signed packets are still accepted. A key file others may write is refused.
    static func loadKey(into configuration: inout GatewayConfiguration, from keyFile: String, logger: Logger) throws {
        let needed = configuration.minimumHash != .none || configuration.auth != .none
        do {
            let contents = try KeyFile.read(at: keyFile)
            if let warning = contents.warning { logger.warning("\(warning)") }
            configuration.key = Array(contents.key.prefix(GatewayConfiguration.maximumKeyBytes))
        } catch .writableByOthers(let path, let mode) {
            throw CLIFailure.other(KeyFile.ReadFailure.writableByOthers(path: path, mode: mode).description)
        } catch .untrusted(let problem) {
            throw CLIFailure.other(KeyFile.ReadFailure.untrusted(problem).description)
        } catch {
            if needed { throw CLIFailure.other(error.description) }
        }
    }

    static func tcpAddress(_ text: String) -> SocketAddress? {
        var host = text
        var port: UInt16 = 1229
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let value = UInt16(rest.dropFirst()) else { return nil }
                port = value
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let value = UInt16(text[text.index(after: colon)...]) else { return nil }
            port = value
        }
        return SocketAddress(host: host, port: port)
    }

    /// `ip=198.18.0.2,fd00::2;domain=pcmk1,6695eb01-…;name=cluster1`
    static func parseGroup(_ text: String) throws -> FenceGroups.Group {
        var group = FenceGroups.Group(requesters: [], domains: [])
        for part in text.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1).map { String($0.trimmingSpaces) }
            guard pair.count == 2 else { throw ValidationError("--group '\(text)': expected ip=…;domain=…") }
            let values = pair[1].split(separator: ",").map { String($0.trimmingSpaces) }.filter {
                !$0.isEmpty
            }
            switch pair[0] {
            case "ip", "requester": group.requesters += values
            case "domain", "uuid": group.domains += values
            case "name": group.name = pair[1]
            default: throw ValidationError("--group '\(text)': unknown key '\(pair[0])' (use ip, domain, name)")
            }
        }
        return group
    }
}
