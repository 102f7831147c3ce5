import ArgumentParser
import FenceAPI
import FoundationEssentials
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
            let file = Self.read(configuration: config)
            settings = file.settings ?? settings
            findings.append(file.finding)
        } else if let fenceVirtConf {
            settings.gateways = [.fenceVirtConf(fenceVirtConf)]
        } else if gateway.enabled {
            settings.gateways = [.direct(try gateway.settings(), keyFile: gateway.keyFileOrDefault)]
        }
        findings += await Self.check(settings, global: global, keyFile: gateway.keyFileOrDefault)
        try Self.report(findings, json: json)
    }

    /// Reads a configuration file as `serve --config` would: its settings (nil if it is not valid) and a
    /// finding that says so.
    static func read(configuration path: String) -> (settings: ServeSettings?, finding: Finding) {
        do {
            return (try ConfigurationFile.read(path: path), .ok("configuration", "\(path) is valid"))
        } catch {
            return (nil, .fail("configuration", error.description, fix: "correct the file at the line shown"))
        }
    }

    /// Runs every check on the settings `serve` would run with: key, bridge and ports of each gateway,
    /// libvirt, the audit log, the firewall. `global`'s URI and database come before the settings';
    /// `keyFile` is the key of a host without a gateway.
    static func check(_ settings: ServeSettings, global: GlobalOptions, keyFile: String) async -> [Finding] {
        var findings: [Finding] = []
        let subject = DoctorSubject(
            uri: global.uri ?? settings.uri ?? global.resolvedURI,
            databasePath: global.database ?? settings.database ?? global.resolvedDatabase,
            http: settings.listen,
            gateway: nil,
            keyFile: keyFile
        )
        if settings.gateways.isEmpty {
            findings.append(
                .ok(
                    "fence_xvm gateway",
                    "not enabled by these settings (give serve's options, --config or --fence-virt-conf)"
                )
            )
        }
        // Each gateway is checked on its own (its key, bridge, ports, firewall); what they share is said once.
        var subjects = [subject]
        for source in settings.gateways {
            var gatewaySubject = subject
            switch source {
            case .direct(let configuration, let keyFile):
                gatewaySubject.gateway = configuration
                gatewaySubject.keyFile = keyFile
            case .fenceVirtConf(let path):
                do {
                    let file = try FenceVirtdConfiguration(contentsOf: path)
                    findings.append(
                        .ok("fence_virt.conf", "\(path): \(file.listener.rawValue) listener, libvirt backend")
                    )
                    for note in file.ignored {
                        findings.append(.warn("fence_virt.conf", note, fix: "remove the setting, or ignore this"))
                    }
                    gatewaySubject.gateway = file.gateway
                    gatewaySubject.keyFile = file.keyFile
                    if let uri = file.libvirtURI, global.uri == nil { gatewaySubject.uri = uri }
                } catch {
                    findings.append(
                        .fail("fence_virt.conf", error.description, fix: "correct the file at the line shown")
                    )
                }
            }
            subjects.append(gatewaySubject)
        }
        if subjects.count > 1 { subjects.removeFirst() }
        func add(_ more: [Finding]) {
            for finding in more where !findings.contains(finding) { findings.append(finding) }
        }
        for subject in subjects { add(DoctorChecks.key(subject)) }
        for subject in subjects { add(DoctorChecks.bridge(subject)) }
        for subject in subjects { add(DoctorChecks.ports(subject)) }
        add(DoctorChecks.libvirt(subjects[0]))
        add(await DoctorChecks.database(subjects[0]))
        for subject in subjects { add(await DoctorChecks.firewall(subject)) }
        return findings
    }

    /// Prints the findings, one line each (or as JSON) and a count of each level.
    /// - Throws: `ExitCode(1)` when one of them fails.
    static func report(_ findings: [Finding], json: Bool) throws {
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
