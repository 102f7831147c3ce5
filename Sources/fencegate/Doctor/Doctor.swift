import ArgumentParser
import FenceAPI
import Foundation
import Logging
import MulticastGateway

/// `fencegate doctor`: checks what trips fence_xvm set-ups up, with the settings `serve` would use.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Check the host for what stops fencing from working: key, bridge, ports, libvirt, audit log, firewall.",
        discussion: """
            Give the same options as to serve (or --fence-virt-conf). Each finding is OK, WARN or FAIL, with the \
            exact fix. Exit status 0 when nothing FAILs, 1 otherwise. Nothing is changed.
            """
    )

    @Option(
        help: ArgumentHelp(
            "Check the settings of this Fencegate configuration file (as serve --config).",
            valueName: "path"
        )
    )
    var config: String?

    @Option(help: ArgumentHelp("Check the settings of fence_virtd's configuration file.", valueName: "path"))
    var fenceVirtConf: String?

    @Option(help: "Address and port of the HTTP API that serve would use.")
    var listen = ListenAddress.default.description

    @Flag(help: "Print the findings as JSON.") var json = false

    @OptionGroup(title: "fence_xvm gateway") var gateway: GatewayOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard ListenAddress(listen) != nil else {
            throw ValidationError("--listen must be a numeric address with a port")
        }
    }

    func run() async throws {
        _ = global.makeLogger(defaultLevel: .critical)
        var findings: [Finding] = []
        var settings = ServeSettings()
        settings.listen = ListenAddress(listen)!
        if let config {
            do {
                settings = try ConfigurationFile.read(path: config)
                findings.append(.ok("configuration", "\(config) is valid"))
            } catch {
                findings.append(.fail("configuration", error.description, fix: "correct the file at the line shown"))
            }
        } else if let fenceVirtConf {
            settings.gateway = .fenceVirtConf(fenceVirtConf)
        } else if gateway.enabled {
            settings.gateway = .direct(try gateway.settings(), keyFile: gateway.keyFile)
        }
        var subject = DoctorSubject(
            uri: global.uri ?? settings.uri ?? global.resolvedURI,
            databasePath: global.database ?? settings.database ?? global.resolvedDatabase,
            http: settings.listen,
            gateway: nil,
            keyFile: gateway.keyFile
        )
        switch settings.gateway {
        case .none:
            findings.append(
                .ok(
                    "fence_xvm gateway",
                    "not enabled by these settings (give serve's options, --config or --fence-virt-conf)"
                )
            )
        case .direct(let configuration, let keyFile):
            subject.gateway = configuration
            subject.keyFile = keyFile
        case .fenceVirtConf(let path):
            do {
                let file = try FenceVirtdConfiguration(contentsOf: path)
                findings.append(.ok("fence_virt.conf", "\(path): \(file.listener.rawValue) listener, libvirt backend"))
                for note in file.ignored {
                    findings.append(.warn("fence_virt.conf", note, fix: "remove the setting, or ignore this"))
                }
                subject.gateway = file.gateway
                subject.keyFile = file.keyFile
                if let uri = file.libvirtURI, global.uri == nil { subject.uri = uri }
            } catch {
                findings.append(.fail("fence_virt.conf", error.description, fix: "correct the file at the line shown"))
            }
        }
        findings += DoctorChecks.key(subject)
        findings += DoctorChecks.bridge(subject)
        findings += DoctorChecks.ports(subject)
        findings += DoctorChecks.libvirt(subject)
        findings += await DoctorChecks.database(subject)
        findings += await DoctorChecks.firewall(subject)

        if json {
            print(try JSONText.encode(findings))
        } else {
            for finding in findings { print(finding.text) }
            let counts = [Finding.Level.ok, .warn, .fail].map { level in
                "\(findings.filter { $0.level == level }.count) \(level.rawValue)"
            }
            print(counts.joined(separator: ", "))
        }
        if findings.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }
}
