import ArgumentParser
import FenceCore

/// `fencegate keygen PATH`: a new shared key for fence_xvm guests and the multicast gateway.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new random key file (4096 bytes, mode 0600) for fence_xvm and the gateway.",
        discussion: "Copy the same file to every guest (e.g. /etc/cluster/fence_xvm.key) over a secure channel."
    )

    @Argument(help: "Where to write the key, e.g. /etc/cluster/fence_xvm.key.")
    var path: String

    @Flag(help: "Replace an existing key file (guests holding the old key stop being able to fence).")
    var force = false

    @Option(help: "Key size in bytes; fence_xvm reads at most 4096.")
    var size = KeyFile.standardSize

    func validate() throws {
        guard (16...KeyFile.standardSize).contains(size) else {
            throw ValidationError("--size must be 16 to \(KeyFile.standardSize) bytes")
        }
    }

    func run() throws {
        do {
            let key = try KeyFile.generate(at: path, size: size, replacing: force)
            print("wrote \(key.count) random bytes to \(path) (mode 0600); fingerprint \(KeyFile.fingerprint(of: key))")
        } catch {
            printError("\(error)")
            throw ExitCode(ExitStatus.failed)
        }
    }
}
