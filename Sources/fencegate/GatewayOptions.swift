import ArgumentParser
import FenceCore
import Foundation
import Logging
import MulticastGateway

/// `serve` options of the fence_xvm gateway. Defaults are fence_virtd's; the listeners are opt-in.
struct GatewayOptions: ParsableArguments {
    @Flag(help: "Answer fence_xvm multicast requests (225.0.0.12:1229 unless changed below).")
    var multicast = false

    @Option(help: "Multicast group: IPv4 (default 225.0.0.12) or IPv6 (e.g. ff05::3:1, which selects IPv6).")
    var multicastAddress = "225.0.0.12"

    @Option(help: "UDP port of the multicast listener; fence_xvm calls back the same port number.")
    var multicastPort: UInt16 = 1229

    @Option(help: "Join the group on this interface only, e.g. the guests' bridge virbr0.")
    var multicastInterface: String?

    @Option(help: "Answer fence_virt -T on this TCP address[:port] (port 1229 by default), e.g. 127.0.0.1.")
    var tcpListen: String?

    @Option(help: "Most fence_virt -T connections open at once (more are closed at once).")
    var tcpMaxConnections = GatewayConfiguration().tcpMaximumConnections

    @Option(help: "Most fence_virt -T connections open at once from one address.")
    var tcpMaxConnectionsPerAddress = GatewayConfiguration().tcpMaximumConnectionsPerAddress

    @Option(help: "Most fence_xvm call backs running at once (more requests are dropped; fence_xvm sends again).")
    var maxCallbacks = GatewayConfiguration().maximumCallbacks

    @Option(help: "The shared key file; its first 4096 bytes are the key (as fence_xvm reads it).")
    var keyFile = GatewayConfiguration.defaultKeyFile

    @Option(help: "Weakest packet hash accepted: none, sha1, sha256, sha512 (stronger ones are always accepted).")
    var hash = "sha256"

    @Option(help: "Challenge-response algorithm: none, sha1, sha256, sha512 (must match the guests' auth).")
    var auth = "sha256"

    @Option(
        help: ArgumentHelp(
            "A group: which requesters (ip=) may fence which domains (domain=, names or UUIDs). Repeatable; none: all allowed.",
            valueName: "ip=A,B;domain=X,Y"
        )
    )
    var group: [String] = []

    var enabled: Bool { multicast || tcpListen != nil }

    /// The gateway options given with a value other than their default, by name.
    var changedOptions: [String] {
        let defaults = GatewayConfiguration()
        var changed: [String] = []
        if multicast { changed.append("--multicast") }
        if multicastAddress != "225.0.0.12" { changed.append("--multicast-address") }
        if multicastPort != 1229 { changed.append("--multicast-port") }
        if multicastInterface != nil { changed.append("--multicast-interface") }
        if tcpListen != nil { changed.append("--tcp-listen") }
        if tcpMaxConnections != defaults.tcpMaximumConnections { changed.append("--tcp-max-connections") }
        if tcpMaxConnectionsPerAddress != defaults.tcpMaximumConnectionsPerAddress {
            changed.append("--tcp-max-connections-per-address")
        }
        if maxCallbacks != defaults.maximumCallbacks { changed.append("--max-callbacks") }
        if keyFile != GatewayConfiguration.defaultKeyFile { changed.append("--key-file") }
        if hash != defaults.minimumHash.description { changed.append("--hash") }
        if auth != defaults.auth.description { changed.append("--auth") }
        if !group.isEmpty { changed.append("--group") }
        return changed
    }

    func validate() throws {
        guard HashType(name: hash) != nil else { throw ValidationError("--hash must be none, sha1, sha256 or sha512") }
        guard HashType(name: auth) != nil else { throw ValidationError("--auth must be none, sha1, sha256 or sha512") }
        guard SocketAddress(host: multicastAddress, port: multicastPort) != nil else {
            throw ValidationError("--multicast-address must be a numeric IPv4 or IPv6 multicast address")
        }
        if let tcpListen, Self.tcpAddress(tcpListen) == nil {
            throw ValidationError("--tcp-listen must be a numeric address with an optional port, e.g. 127.0.0.1:1229")
        }
        for text in group { _ = try Self.parseGroup(text) }
        if let problem = GatewayConfiguration.limitProblem(
            tcpMaximumConnections: tcpMaxConnections,
            tcpMaximumConnectionsPerAddress: tcpMaxConnectionsPerAddress,
            maximumCallbacks: maxCallbacks
        ) {
            throw ValidationError("--" + problem.option + " " + problem.message)
        }
    }

    /// The gateway's configuration, reading the key file (a key file that group or others may read is used,
    /// with a warning logged; one they may write is refused).
    func configuration(logger: Logger) throws -> GatewayConfiguration {
        var configuration = try settings()
        try Self.loadKey(into: &configuration, from: keyFile, logger: logger)
        return configuration
    }

    /// The gateway's settings from the options, without the key.
    func settings() throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        configuration.multicast =
            multicast
            ? MulticastListenerConfiguration(
                group: multicastAddress,
                port: multicastPort,
                interface: multicastInterface
            )
            : nil
        configuration.tcp = tcpListen.flatMap(Self.tcpAddress)
        configuration.minimumHash = HashType(name: hash)!
        configuration.auth = HashType(name: auth)!
        configuration.groups = FenceGroups(try group.map(Self.parseGroup))
        configuration.tcpMaximumConnections = tcpMaxConnections
        configuration.tcpMaximumConnectionsPerAddress = tcpMaxConnectionsPerAddress
        configuration.maximumCallbacks = maxCallbacks
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
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { throw ValidationError("--group '\(text)': expected ip=…;domain=…") }
            let values = pair[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
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
