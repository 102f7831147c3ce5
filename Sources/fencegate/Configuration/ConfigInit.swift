import ArgumentParser
import FenceAPI
import FenceCore
import FoundationEssentials
import Glibc
import Logging
import MulticastGateway
import Store

extension Config {
    /// `fencegate config init`: asks for the few settings a host needs, writes a commented configuration file,
    /// then runs the doctor's checks on it (as `fence_virtd -c` asks for fence_virtd's).
    struct Init: AsyncParsableCommand {
        static let defaultPath = "/etc/fencegate/fencegate.toml"

        static let configuration = CommandConfiguration(
            abstract: "Write a configuration file from a few questions (as fence_virtd -c), then check the host.",
            discussion: """
                Asks for the libvirt URI, the guests' bridge (those on this host are offered), fence_xvm's \
                multicast address and port, the HTTP API's address, and the key file (created, mode 0600, if \
                missing). Enter takes the default in brackets; an option answers its question without asking; \
                --yes takes every default (for scripts). Then writes the file (mode 0600, atomically; an \
                existing one only with --force) and prints what `fencegate doctor --config PATH` finds. Exit \
                status: 0 written and nothing fails, 1 written but a check fails (or not written), 64 no terminal \
                and no --yes, or a bad option.
                """
        )

        @Option(help: ArgumentHelp("Where to write the file.", valueName: "path"))
        var path = Init.defaultPath

        @Flag(help: "Replace an existing file at --path.") var force = false

        @Flag(name: [.customShort("y"), .long], help: "Take the default (or the option given) for every question.")
        var yes = false

        @Option(help: ArgumentHelp("The guests' bridge, or none (fence_virtd's interface).", valueName: "name"))
        var bridge: String?

        @Option(help: "fence_xvm's multicast group (default 225.0.0.12; ff05::3:1 selects IPv6).")
        var multicastAddress: String?

        @Option(help: "fence_xvm's UDP port (default 1229).") var multicastPort: String?

        @Option(help: "Address and port of the HTTP API (default 127.0.0.1:8786: this host only).")
        var listen: String?

        @Option(help: ArgumentHelp("PEM certificate for HTTPS, for an address off loopback.", valueName: "path"))
        var tlsCert: String?

        @Option(help: ArgumentHelp("PEM private key for HTTPS.", valueName: "path")) var tlsKey: String?

        @Flag(help: "Allow plain HTTP on an address off loopback (bearer tokens then cross the network in clear).")
        var allowPlainHttp = false

        @Option(
            help: ArgumentHelp(
                "The guests' shared key (default \(GatewayConfiguration.defaultKeyFile)); created if missing.",
                valueName: "path"
            )
        )
        var keyFile: String?

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            _ = global.makeLogger(defaultLevel: .critical)
            do {
                try checkDestination()
                guard yes || isatty(STDIN_FILENO) == 1 else {
                    throw InitQuestions.Stop(
                        message:
                            "standard input is not a terminal: run it at a terminal to answer its questions, "
                            + "or pass --yes to take the defaults (and the options given)"
                    )
                }
                let answers = try ask(InitQuestions(interactive: !yes))
                try write(answers)
            } catch let stop as InitQuestions.Stop {
                printError("config init: \(stop.message)")
                throw ExitCode(ExitStatus.badArguments)
            } catch let failure as CLIFailure {
                printError("config init: \(failure.message)")
                throw ExitCode(failure.exitCode)
            }
            print("")
            print("fencegate doctor --config \(path):")
            let file = Doctor.read(configuration: path)
            var findings = [file.finding]
            if let settings = file.settings {
                findings += await Doctor.check(settings, global: global, keyFile: GatewayConfiguration.defaultKeyFile)
            }
            try Doctor.report(findings, json: false)
            print("Start it with: fencegate serve --config \(path)")
        }

        /// Refuses, before any question, a file that exists (without --force) or a directory that does not
        /// (the default's, /etc/fencegate, is created).
        private func checkDestination() throws {
            if !force, FileManager.default.fileExists(atPath: path) {
                throw CLIFailure.other("\(path) already exists; pass --force to replace it")
            }
            let directory = path.parentPath
            if path == Init.defaultPath { try createDirectory(directory) }
            do {
                try InitAnswer.existingDirectory(of: path)
            } catch {
                throw InitQuestions.Stop(message: "--path \(error.message)")
            }
        }

        private func ask(_ questions: InitQuestions) throws(InitQuestions.Stop) -> InitAnswers {
            var answers = InitAnswers()
            if questions.interactive {
                print("Writing \(path). Enter takes the default in brackets.\n")
            }
            answers.database = global.database
            answers.uri = ProcessInfo.processInfo.environment["FENCEGATE_URI"] ?? answers.uri
            answers.uri = try questions.ask(
                "libvirt URI",
                explanation: "The hypervisor whose domains are fenced (qemu:///system for the host's QEMU/KVM).",
                default: answers.uri,
                given: global.uri,
                option: "--uri",
                InitAnswer.uri
            )
            let bridges = InitQuestions.hostBridges()
            answers.interface = try questions.ask(
                "Bridge",
                explanation: bridges.isEmpty
                    ? "\nThe guests' bridge: fence_xvm's requests arrive on it. No bridge was found on this host; "
                        + "type its name, or none for the default route's interface."
                    : "\nThe guests' bridge: fence_xvm's requests arrive on it. Bridges on this host: "
                        + bridges.joined(separator: ", ") + " (or none: the default route's interface).",
                default: bridges.first ?? "none",
                given: bridge,
                option: "--bridge",
                InitAnswer.interface
            )
            answers.multicastAddress = try questions.ask(
                "Multicast address",
                explanation:
                    "\nThe multicast group fence_xvm sends its requests to (fence_virtd's default: 225.0.0.12).",
                default: answers.multicastAddress,
                given: multicastAddress,
                option: "--multicast-address",
                InitAnswer.multicastAddress
            )
            answers.multicastPort = try questions.ask(
                "Multicast port",
                default: "\(answers.multicastPort)",
                given: multicastPort,
                option: "--multicast-port",
                InitAnswer.port
            )
            try askHTTP(questions, into: &answers)
            let keyDirectory = GatewayConfiguration.defaultKeyFile.parentPath
            answers.keyFile = try questions.ask(
                "Key file",
                explanation: "\nThe key the guests sign their requests with; a new one is written if it is missing.",
                default: answers.keyFile,
                given: keyFile,
                option: "--key-file"
            ) { (text) throws(AnswerError) in
                try InitAnswer.keyFile(text, creatingDirectory: keyDirectory)
            }
            return answers
        }

        /// The HTTP API's address; off loopback, a certificate and key, or plain HTTP said yes to.
        private func askHTTP(_ questions: InitQuestions, into answers: inout InitAnswers) throws(InitQuestions.Stop) {
            var explanation: String? =
                "\nThe HTTP API is always served; on a loopback address (the default) only this host reaches it."
            while true {
                answers.listen = try questions.ask(
                    "HTTP API address",
                    explanation: explanation,
                    default: ListenAddress.default.description,
                    given: listen,
                    option: "--listen",
                    InitAnswer.listen
                )
                explanation = nil
                if answers.listen.isLoopback { return }
                let cert = try questions.ask(
                    "TLS certificate (PEM) for HTTPS on \(answers.listen)",
                    default: "none",
                    given: tlsCert,
                    option: "--tls-cert"
                ) { (text) throws(AnswerError) in try InitAnswer.existingFile(text, allowingNone: true) }
                if let cert {
                    let key = try questions.ask(
                        "TLS private key (PEM)",
                        default: nil,
                        given: tlsKey,
                        option: "--tls-key"
                    ) { (text) throws(AnswerError) in try InitAnswer.existingFile(text, allowingNone: false)! }
                    answers.tls = (cert, key)
                    return
                }
                answers.allowPlainHTTP = try questions.ask(
                    "Serve plain HTTP on \(answers.listen)? Bearer tokens would cross the network in clear text",
                    default: "no",
                    given: allowPlainHttp ? "yes" : nil,
                    option: "--allow-plain-http",
                    InitAnswer.yesOrNo
                )
                if answers.allowPlainHTTP { return }
                guard questions.interactive, listen == nil else {
                    throw InitQuestions.Stop(
                        message:
                            "--listen \(answers.listen) is not loopback: give --tls-cert and --tls-key, or --allow-plain-http"
                    )
                }
                print("  then give a loopback address, or a certificate for HTTPS")
            }
        }

        /// Creates the key if missing, then writes the file.
        private func write(_ answers: InitAnswers) throws(CLIFailure) {
            if !FileManager.default.fileExists(atPath: answers.keyFile) {
                try createDirectory(answers.keyFile.parentPath)
                do {
                    let key = try KeyFile.generate(at: answers.keyFile)
                    print(
                        "\nwrote a new key to \(answers.keyFile) (\(key.count) random bytes, mode 0600), "
                            + "fingerprint \(KeyFile.fingerprint(of: key)); copy it to every guest"
                    )
                } catch {
                    throw CLIFailure.other("\(error)")
                }
            }
            do {
                try PrivateFile.write(Array(answers.toml(path: path).utf8), to: path, replacing: force)
            } catch {
                switch error {
                case .exists(let path): throw .other("\(path) already exists; pass --force to replace it")
                case .cannotWrite(let path, let step, let reason):
                    throw .other("cannot write \(path): \(step): \(reason)")
                }
            }
            print("\nwrote \(path) (mode 0600)")
        }

        /// Creates `directory` (mode 0755) if it is missing.
        private func createDirectory(_ directory: String) throws(CLIFailure) {
            do {
                try FileManager.default.createDirectory(
                    atPath: directory,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o755]
                )
            } catch {
                throw CLIFailure.other("cannot create \(directory): \(fileErrorText(error))")
            }
        }
    }
}
