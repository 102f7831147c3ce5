import ArgumentParser
import FenceCore
import MulticastGateway

/// `fencegate key fingerprint PATH…`: compare key files across the host and its guests without showing them.
struct Key: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Key file tools.",
        subcommands: [Fingerprint.self]
    )

    /// Prints each key file's fingerprint: the first 16 bytes of SHA-256 over the bytes fence_xvm uses.
    struct Fingerprint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print key fingerprints (SHA-256 of the first 4096 bytes, 32 hex digits).",
            discussion: """
                On a guest without fencegate the same fingerprint is: head -c 4096 KEYFILE | sha256sum | cut -c1-32
                """
        )

        @Argument(help: "Key files, e.g. /etc/cluster/fence_xvm.key.") var paths: [String] = [
            GatewayConfiguration.defaultKeyFile
        ]

        func run() throws {
            var failed = false
            for path in paths {
                do {
                    let contents = try KeyFile.read(at: path)
                    if let warning = contents.warning { printError(warning) }
                    print("\(KeyFile.fingerprint(of: contents.key))  \(path)")
                } catch {
                    printError("\(error)")
                    failed = true
                }
            }
            if failed { throw ExitCode(ExitStatus.failed) }
        }
    }
}
