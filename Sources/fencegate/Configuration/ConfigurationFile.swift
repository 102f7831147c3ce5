import FenceAPI
import FenceCore
import FoundationEssentials
import Logging
import MulticastGateway
import TOMLKit

/// Why a configuration file cannot be used: the file, the line when known, and what is wrong.
struct ConfigurationError: Error, CustomStringConvertible {
    let path: String
    let line: Int?
    let message: String

    var description: String { line.map { "\(path):\($0): \(message)" } ?? "\(path): \(message)" }
}

/// Fencegate's configuration file (TOML, `/etc/fencegate/fencegate.toml` by convention): every `serve`
/// setting, in tables. Unknown tables and keys are errors, so a typo never silently leaves a default.
enum ConfigurationFile {
    /// The tables and keys the file may hold.
    static let schema: [String: Set<String>] = [
        "hypervisor": ["uri", "operation_timeout", "health_interval", "threads"],
        "audit": [
            "database", "refusals_per_client", "refusals_per_minute", "change_retention_days", "read_retention_days",
        ],
        "http": [
            "listen", "tls_cert", "tls_key", "allow_plain_http", "redfish", "max_body_bytes", "max_connections",
            "max_connections_per_address", "reserved_connections", "connection_timeout", "threads",
        ],
        "gateway": ["fence_virt_conf", "key_file", "hash", "auth", "multicast", "tcp", "group"],
        "gateway.multicast": ["address", "port", "interface", "max_callbacks"],
        "gateway.tcp": ["listen", "max_connections", "max_connections_per_address"],
        "gateway.group": ["name", "ip", "domains"],
        "logging": ["level", "format"],
        "fence_races": ["window", "preferred", "grace", "requester"],
        "cluster": ["name"],
        "fence_races.requester": ["address", "domain"],
    ]

    /// Reads and checks the file at `path`.
    static func read(path: String) throws(ConfigurationError) -> ServeSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(path: path, line: nil, message: "cannot read it: \(fileErrorText(error))")
        }
        return try parse(text, path: path)
    }

    /// Parses and checks `text`; `path` names it in errors.
    static func parse(_ text: String, path: String) throws(ConfigurationError) -> ServeSettings {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                path: path,
                line: error.source.begin.line,
                message: "not valid TOML: \(error.description)"
            )
        } catch {
            throw ConfigurationError(path: path, line: nil, message: "not valid TOML: \(error)")
        }
        var reader = Reader(path: path, lines: KeyLines(text))
        let settings = try reader.settings(root)
        for problem in settings.problems {
            throw reader.error(problem.key, "\(problem.key) \(problem.message)")
        }
        return settings
    }

    /// A TOML basic string: quoted, with backslash, quote and control characters escaped.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                result += "\\u" + zeroPadded(scalar.value, width: 4, radix: 16, uppercase: true)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

/// Lines of `key = …` and `[table]` headers, to point errors at the line a setting is on (the TOML
/// library reports positions of syntax errors only).
struct KeyLines {
    private var lines: [String: Int] = [:]

    init(_ text: String) {
        var table = ""
        // The current element of each array of tables, by its path with the elements above it resolved
        // (`gateway`, `gateway[1].group`): a `[gateway.multicast]` after the second `[[gateway]]` is
        // `gateway[1].multicast`.
        var arrayIndexes: [String: Int] = [:]
        func resolved(_ name: String) -> String {
            var path = ""
            for component in name.split(separator: ".").map({ String($0.trimmingSpaces) }) {
                path = path.isEmpty ? component : "\(path).\(component)"
                if let index = arrayIndexes[path] { path += "[\(index)]" }
            }
            return path
        }
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw.trimmingSpaces)
            if line.hasPrefix("[[") {
                let name = String(line.dropFirst(2).prefix { $0 != "]" }.trimmingSpaces)
                // The array's own path: its parents resolved, itself not (each element's arrays are its own).
                let parent =
                    name.lastIndex(of: ".").map { resolved(String(name[..<$0])) + name[$0...] } ?? name
                let position = arrayIndexes[parent, default: -1] + 1
                arrayIndexes[parent] = position
                table = "\(parent)[\(position)]"
                lines[table] = lines[table] ?? index + 1
                lines[parent] = lines[parent] ?? index + 1
            } else if line.hasPrefix("[") {
                table = resolved(String(line.dropFirst().prefix { $0 != "]" }.trimmingSpaces))
                lines[table] = lines[table] ?? index + 1
            } else if let equals = line.firstIndex(of: "="), !line.hasPrefix("#") {
                // Without the quotes around a quoted key.
                var key = line[..<equals].trimmingSpaces.drop { $0 == "\"" || $0 == "'" }
                while let last = key.last, last == "\"" || last == "'" { key.removeLast() }
                let path = table.isEmpty ? String(key) : "\(table).\(key)"
                lines[path] = lines[path] ?? index + 1
            }
        }
    }

    /// The line of `path` (e.g. `http.listen`, `gateway.group[1].ip`), else of the nearest enclosing table.
    func line(of path: String) -> Int? {
        var candidate = path
        while true {
            if let line = lines[candidate] { return line }
            guard let dot = candidate.lastIndex(of: ".") else { return nil }
            candidate = String(candidate[..<dot])
        }
    }
}

/// Reads typed values out of the TOML tree, with errors that name the key and its line.
private struct Reader {
    let path: String
    let lines: KeyLines

    func error(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(path: path, line: lines.line(of: key), message: message)
    }

    mutating func settings(_ root: TOMLTable) throws(ConfigurationError) -> ServeSettings {
        for key in root.keys where ConfigurationFile.schema[key] == nil {
            throw error(
                key,
                "unknown table or key '\(key)' (known: \(ConfigurationFile.schema.keys.filter { !$0.contains(".") }.sorted().joined(separator: ", ")))"
            )
        }
        var settings = ServeSettings()
        let hypervisor = try table("hypervisor", in: root)
        settings.uri = try string("hypervisor.uri", hypervisor?["uri"])
        settings.operationTimeout =
            try number("hypervisor.operation_timeout", hypervisor?["operation_timeout"]) ?? settings.operationTimeout
        settings.healthInterval =
            try number("hypervisor.health_interval", hypervisor?["health_interval"]) ?? settings.healthInterval

        settings.hypervisorThreads =
            try integer("hypervisor.threads", hypervisor?["threads"], in: 1...1024) ?? settings.hypervisorThreads

        let audit = try table("audit", in: root)
        settings.database = try string("audit.database", audit?["database"])
        settings.refusalsPerClient =
            try integer("audit.refusals_per_client", audit?["refusals_per_client"], in: 1...100_000)
            ?? settings.refusalsPerClient
        settings.refusalsPerMinute =
            try integer("audit.refusals_per_minute", audit?["refusals_per_minute"], in: 1...100_000)
            ?? settings.refusalsPerMinute
        let days = 0...ServeSettings.maximumRetentionDays
        settings.changeRetentionDays =
            try integer("audit.change_retention_days", audit?["change_retention_days"], in: days)
            ?? settings.changeRetentionDays
        settings.readRetentionDays =
            try integer("audit.read_retention_days", audit?["read_retention_days"], in: days)
            ?? settings.readRetentionDays

        if let http = try table("http", in: root) {
            if let listen = try string("http.listen", http["listen"]) {
                guard let address = ListenAddress(listen) else {
                    throw error(
                        "http.listen",
                        "http.listen \"\(listen)\" is not a numeric address with an optional port, e.g. 127.0.0.1:8786"
                    )
                }
                settings.listen = address
            }
            settings.tlsCert = try string("http.tls_cert", http["tls_cert"])
            settings.tlsKey = try string("http.tls_key", http["tls_key"])
            settings.allowPlainHTTP = try bool("http.allow_plain_http", http["allow_plain_http"]) ?? false
            settings.redfish = try bool("http.redfish", http["redfish"]) ?? false
            settings.maxBodyBytes =
                try integer("http.max_body_bytes", http["max_body_bytes"], in: 1...(64 << 20)) ?? settings.maxBodyBytes
            settings.maxConnections = UInt32(
                try integer("http.max_connections", http["max_connections"], in: 1...1_000_000)
                    ?? Int(settings.maxConnections)
            )
            settings.maxConnectionsPerAddress = UInt32(
                try integer("http.max_connections_per_address", http["max_connections_per_address"], in: 0...1_000_000)
                    ?? Int(settings.maxConnectionsPerAddress)
            )
            settings.reservedConnections = UInt32(
                try integer("http.reserved_connections", http["reserved_connections"], in: 0...1_000_000)
                    ?? Int(settings.reservedConnections)
            )
            settings.connectionTimeout = UInt32(
                try integer("http.connection_timeout", http["connection_timeout"], in: 1...86400)
                    ?? Int(settings.connectionTimeout)
            )
            settings.httpThreads = UInt32(
                try integer("http.threads", http["threads"], in: 1...64) ?? Int(settings.httpThreads)
            )
        }

        if let gateway = root["gateway"] {
            // One gateway as [gateway], or several as [[gateway]], each with its own listeners, key and groups.
            if let array = gateway.array {
                for (index, element) in array.enumerated() {
                    let key = "gateway[\(index)]"
                    guard let table = element.table else { throw error(key, "each gateway must be a table") }
                    try checkKeys(table, of: "gateway", at: key)
                    settings.gateways.append(try self.gateway(table, at: key))
                }
            } else if let table = try table("gateway", in: root) {
                settings.gateways = [try self.gateway(table, at: "gateway")]
            }
        }

        if let cluster = try table("cluster", in: root) {
            guard let name = try string("cluster.name", cluster["name"]) else {
                throw error("cluster", "[cluster] needs name = \"…\" (the CPG group all hosts join)")
            }
            settings.clusterName = name
        }

        if let races = try table("fence_races", in: root) {
            settings.raceWindow = try number("fence_races.window", races["window"]) ?? settings.raceWindow
            settings.priorityGrace = try number("fence_races.grace", races["grace"]) ?? settings.priorityGrace
            settings.preferredDomains = try strings("fence_races.preferred", races["preferred"])
            if let requesters = races["requester"] {
                guard let array = requesters.array else {
                    throw error(
                        "fence_races.requester",
                        "fence_races.requester must be an array of tables: [[fence_races.requester]]"
                    )
                }
                for (index, element) in array.enumerated() {
                    let key = "fence_races.requester[\(index)]"
                    guard let entry = element.table else {
                        throw error(key, "each fence_races.requester must be a table")
                    }
                    try checkKeys(entry, of: "fence_races.requester", at: key)
                    guard let address = try string("\(key).address", entry["address"]),
                        let domain = try string("\(key).domain", entry["domain"])
                    else {
                        throw error(
                            key,
                            "fence_races.requester needs address = \"…\" (a guest's) and domain = \"…\" (its name or UUID)"
                        )
                    }
                    settings.requesterDomains[address] = domain
                }
            }
        }

        if let logging = try table("logging", in: root) {
            if let level = try string("logging.level", logging["level"]) {
                guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                    throw error(
                        "logging.level",
                        "logging.level \"\(level)\" is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                settings.logLevel = parsed
            }
            if let format = try string("logging.format", logging["format"]) {
                guard let parsed = LogFormat(rawValue: format) else {
                    throw error("logging.format", "logging.format \"\(format)\" is neither text nor json")
                }
                settings.logFormat = parsed
            }
        }
        return settings
    }

    private func gateway(
        _ gateway: TOMLTable,
        at prefix: String
    ) throws(ConfigurationError) -> ServeSettings.GatewaySource {
        if let fenceVirtConf = try string("\(prefix).fence_virt_conf", gateway["fence_virt_conf"]) {
            if let other = gateway.keys.first(where: { $0 != "fence_virt_conf" }) {
                throw error(
                    "\(prefix).\(other)",
                    "\(prefix).\(other) cannot be combined with gateway.fence_virt_conf, which sets the whole gateway"
                )
            }
            return .fenceVirtConf(fenceVirtConf)
        }
        var configuration = GatewayConfiguration()
        configuration.minimumHash = try hash("\(prefix).hash", gateway["hash"]) ?? configuration.minimumHash
        configuration.auth = try hash("\(prefix).auth", gateway["auth"]) ?? configuration.auth
        let keyFile = try string("\(prefix).key_file", gateway["key_file"]) ?? GatewayConfiguration.defaultKeyFile
        configuration.multicast = nil
        if let multicast = try table("multicast", in: gateway, path: "\(prefix).multicast", schema: "gateway.multicast")
        {
            let port = try integer("\(prefix).multicast.port", multicast["port"], in: 1...65535) ?? 1229
            let address = try string("\(prefix).multicast.address", multicast["address"]) ?? "225.0.0.12"
            guard let group = SocketAddress(host: address, port: UInt16(port)), group.isMulticast else {
                throw error(
                    "\(prefix).multicast.address",
                    "\(prefix).multicast.address \"\(address)\" is not a numeric multicast address"
                )
            }
            configuration.multicast = MulticastListenerConfiguration(
                group: address,
                port: UInt16(port),
                interface: try string("\(prefix).multicast.interface", multicast["interface"])
            )
            configuration.maximumCallbacks =
                try integer("\(prefix).multicast.max_callbacks", multicast["max_callbacks"], in: 1...65536)
                ?? configuration.maximumCallbacks
        }
        if let tcp = try table("tcp", in: gateway, path: "\(prefix).tcp", schema: "gateway.tcp") {
            let listen = try string("\(prefix).tcp.listen", tcp["listen"]) ?? "127.0.0.1:1229"
            guard let address = GatewayOptions.tcpAddress(listen) else {
                throw error(
                    "\(prefix).tcp.listen",
                    "\(prefix).tcp.listen \"\(listen)\" is not a numeric address with an optional port"
                )
            }
            configuration.tcp = address
            configuration.tcpMaximumConnections =
                try integer("\(prefix).tcp.max_connections", tcp["max_connections"], in: 1...65536)
                ?? configuration.tcpMaximumConnections
            configuration.tcpMaximumConnectionsPerAddress =
                try integer(
                    "\(prefix).tcp.max_connections_per_address",
                    tcp["max_connections_per_address"],
                    in: 1...65536
                )
                ?? configuration.tcpMaximumConnectionsPerAddress
        }
        guard configuration.multicast != nil || configuration.tcp != nil else {
            throw error(
                prefix,
                "[\(prefix)] enables no listener: add [gateway.multicast] and/or [gateway.tcp], or gateway.fence_virt_conf"
            )
        }
        if let groups = gateway["group"] {
            guard let array = groups.array else {
                throw error("\(prefix).group", "\(prefix).group must be an array of tables: [[gateway.group]]")
            }
            var parsed: [FenceGroups.Group] = []
            for (index, element) in array.enumerated() {
                let key = "\(prefix).group[\(index)]"
                guard let group = element.table else { throw error(key, "each gateway.group must be a table") }
                try checkKeys(group, of: "gateway.group", at: key)
                let requesters = try strings("\(key).ip", group["ip"])
                let domains = try strings("\(key).domains", group["domains"])
                guard !requesters.isEmpty, !domains.isEmpty else {
                    throw error(
                        key,
                        "gateway.group needs ip = [\"…\"] (the guests) and domains = [\"…\"] (names or UUIDs)"
                    )
                }
                parsed.append(
                    FenceGroups.Group(
                        name: try string("\(key).name", group["name"]),
                        requesters: requesters,
                        domains: domains
                    )
                )
            }
            configuration.groups = FenceGroups(parsed)
        }
        return .direct(configuration, keyFile: keyFile)
    }

    // MARK: - Typed values

    private func checkKeys(_ table: TOMLTable, of schemaName: String, at key: String) throws(ConfigurationError) {
        let known = ConfigurationFile.schema[schemaName] ?? []
        for name in table.keys where !known.contains(name) {
            throw error(
                "\(key).\(name)",
                "unknown key '\(name)' in [\(schemaName)] (known: \(known.sorted().joined(separator: ", ")))"
            )
        }
    }

    /// The table `name` in `parent`, if there is one; `path` names it in errors (default: `name`), `schema`
    /// lists its keys (default: `path`).
    private func table(
        _ name: String,
        in parent: TOMLTable,
        path: String? = nil,
        schema: String? = nil
    ) throws(ConfigurationError) -> TOMLTable? {
        let key = path ?? name
        guard let value = parent[name] else { return nil }
        guard let table = value.table else { throw error(key, "\(key) must be a table: [\(key)]") }
        try checkKeys(table, of: schema ?? key, at: key)
        return table
    }

    private func string(_ key: String, _ value: (any TOMLValueConvertible)?) throws(ConfigurationError) -> String? {
        guard let value else { return nil }
        guard let string = value.string else { throw error(key, "\(key) must be a string in double quotes") }
        return string
    }

    private func strings(_ key: String, _ value: (any TOMLValueConvertible)?) throws(ConfigurationError) -> [String] {
        guard let value else { return [] }
        guard let array = value.array else {
            throw error(key, "\(key) must be an array of strings, e.g. [\"a\", \"b\"]")
        }
        var result: [String] = []
        for element in array {
            guard let string = element.string else { throw error(key, "\(key) must hold strings only") }
            result.append(string)
        }
        return result
    }

    private func bool(_ key: String, _ value: (any TOMLValueConvertible)?) throws(ConfigurationError) -> Bool? {
        guard let value else { return nil }
        guard let bool = value.bool else { throw error(key, "\(key) must be true or false") }
        return bool
    }

    private func integer(
        _ key: String,
        _ value: (any TOMLValueConvertible)?,
        in range: ClosedRange<Int>
    ) throws(ConfigurationError) -> Int? {
        guard let value else { return nil }
        guard let integer = value.int else { throw error(key, "\(key) must be a whole number") }
        guard range.contains(integer) else {
            throw error(key, "\(key) must be \(range.lowerBound) to \(range.upperBound)")
        }
        return integer
    }

    private func number(_ key: String, _ value: (any TOMLValueConvertible)?) throws(ConfigurationError) -> Double? {
        guard let value else { return nil }
        if let integer = value.int { return Double(integer) }
        guard let double = value.double else { throw error(key, "\(key) must be a number of seconds") }
        return double
    }

    private func hash(_ key: String, _ value: (any TOMLValueConvertible)?) throws(ConfigurationError) -> HashType? {
        guard let name = try string(key, value) else { return nil }
        guard let type = HashType(name: name.lowercased()) else {
            throw error(key, "\(key) \"\(name)\" is not one of none, sha1, sha256, sha512")
        }
        return type
    }
}
