import ArgumentParser
import FenceCore
import FoundationEssentials
import Logging
import MulticastGateway

/// `fencegate config init|check|import`.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a configuration file, check one, or convert fence_virtd's into one.",
        subcommands: [Init.self, Check.self, Import.self]
    )

    /// `fencegate config check FILE`: parses and validates, as `serve --config FILE` would.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Validate a configuration file; print its errors with line numbers (exit 78) or a summary (exit 0)."
        )

        @Argument(help: "The TOML configuration file.") var path: String

        func run() throws {
            let settings: ServeSettings
            do {
                settings = try ConfigurationFile.read(path: path)
            } catch {
                printError(error.description)
                throw ExitCode(ExitStatus.configuration)
            }
            var logger = Logger(label: "config")
            logger.logLevel = .critical
            let gateways: (configurations: [GatewayConfiguration], uri: String?, clusterName: String?)
            do {
                gateways = try settings.loadGateways(logger: logger)
            } catch let failure as CLIFailure {
                printError("\(path): \(failure.message)")
                throw ExitCode(ExitStatus.configuration)
            }
            var lines = ["\(path): OK"]
            lines.append(
                "  hypervisor: \(settings.uri ?? gateways.uri ?? "the default (--uri, $FENCEGATE_URI, qemu:///system)")"
            )
            lines.append(
                "  audit log: \(settings.database ?? "the default path"), "
                    + "\(settings.serviceConfiguration.auditRetention)"
            )
            lines.append("  HTTP API: \(settings.tlsCert == nil ? "http" : "https")://\(settings.listen)")
            for (index, configuration) in gateways.configurations.enumerated() {
                // With several gateways, each one's lines are named as in the file.
                let indent = gateways.configurations.count > 1 ? "    " : "  "
                if gateways.configurations.count > 1 { lines.append("  gateway[\(index)]:") }
                if let multicast = configuration.multicast {
                    lines.append(
                        "\(indent)fence_xvm: multicast \(multicast.group):\(multicast.port) on \(multicast.interface ?? "the default interface")"
                    )
                }
                if let tcp = configuration.tcp { lines.append("\(indent)fence_virt: tcp \(tcp)") }
                let groups = configuration.groups.groups.count
                lines.append(
                    "\(indent)hash \(configuration.minimumHash), auth \(configuration.auth), \(configuration.key.count)-byte key, \(groups) group(s)"
                )
            }
            if gateways.configurations.isEmpty { lines.append("  fence_xvm gateway: off") }
            if let cluster = settings.clusterName ?? gateways.clusterName {
                lines.append("  cluster: \(cluster) (corosync CPG)")
            }
            print(lines.joined(separator: "\n"))
        }
    }

    /// `fencegate config import /etc/fence_virt.conf`: the same settings as a Fencegate configuration file.
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print fence_virtd's configuration file as a Fencegate configuration file (TOML)."
        )

        @Argument(help: "fence_virtd's configuration file.") var path = "/etc/fence_virt.conf"

        func run() throws {
            let file: FenceVirtdConfiguration
            do {
                file = try FenceVirtdConfiguration(contentsOf: path)
            } catch {
                printError(error.description)
                throw ExitCode(ExitStatus.configuration)
            }
            print(FencegateTOML.render(file, source: path), terminator: "")
        }
    }
}

/// Writes a Fencegate configuration file for the settings of a fence_virt.conf.
enum FencegateTOML {
    static func render(_ file: FenceVirtdConfiguration, source: String) -> String {
        let quoted = ConfigurationFile.quoted
        var lines = ["# Fencegate configuration, converted from \(source) by `fencegate config import`."]
        lines += file.ignored.map { "# \($0)" }
        if let uri = file.libvirtURI { lines += ["", "[hypervisor]", "uri = \(quoted(uri))"] }
        if let cluster = file.clusterName {
            lines += [
                "",
                "# backend = \"cpg\": cluster mode (see the README's \"Cluster mode\"); every host joins this cluster.",
                "[cluster]", "name = \(quoted(cluster))",
            ]
        }
        lines += [
            "", "[gateway]", "key_file = \(quoted(file.keyFile))",
            "hash = \(quoted(file.gateway.minimumHash.description))",
            "auth = \(quoted(file.gateway.auth.description))",
        ]
        if let multicast = file.gateway.multicast {
            lines += ["", "[gateway.multicast]", "address = \(quoted(multicast.group))", "port = \(multicast.port)"]
            if let interface = multicast.interface { lines.append("interface = \(quoted(interface))") }
        }
        if let tcp = file.gateway.tcp {
            lines += ["", "[gateway.tcp]", "listen = \(quoted(tcp.description))"]
        }
        for group in file.gateway.groups.groups {
            lines += ["", "[[gateway.group]]"]
            if let name = group.name { lines.append("name = \(quoted(name))") }
            lines.append("ip = [\(group.requesters.map(quoted).joined(separator: ", "))]")
            lines.append("domains = [\(group.domains.map(quoted).joined(separator: ", "))]")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
