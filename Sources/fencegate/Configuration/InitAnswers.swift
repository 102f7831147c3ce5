import FenceAPI
import FenceCore
import FoundationEssentials
import Glibc
import MulticastGateway
import Store

/// Why an answer to one of `config init`'s questions cannot be used, said so that the next answer can be right.
struct AnswerError: Error {
    let message: String

    init(_ message: String) { self.message = message }
}

/// The answers of `fencegate config init`, and the commented configuration file they make.
struct InitAnswers {
    var uri = "qemu:///system"
    /// The guests' bridge; nil: the default route's interface.
    var interface: String?
    var multicastAddress = MulticastListenerConfiguration().group
    var multicastPort = MulticastListenerConfiguration().port
    var listen = ListenAddress.default
    var tls: (cert: String, key: String)?
    var allowPlainHTTP = false
    var keyFile = GatewayConfiguration.defaultKeyFile
    /// nil: the default audit database.
    var database: String?

    /// The configuration file to be written at `path`, with a comment on each setting.
    func toml(path: String) -> String {
        let quoted = ConfigurationFile.quoted
        var lines = [
            "# Fencegate configuration, written by `fencegate config init`.",
            "# Check it: fencegate config check \(path)",
            "# Check the host: fencegate doctor --config \(path)",
            "# Run it: fencegate serve --config \(path)",
            "# Every key is in the README (\"Configuration file\").",
            "",
            "[hypervisor]",
            "uri = \(quoted(uri))  # libvirt URI of the hypervisor whose domains are fenced",
            "",
            "[audit]",
        ]
        if let database {
            lines.append("database = \(quoted(database))  # the SQLite audit log")
        } else {
            lines.append(
                "# database = \"/var/lib/fencegate/audit.db\"  # default: $FENCEGATE_DATABASE, else this path as root"
            )
        }
        lines += [
            "",
            "[http]",
            "listen = \(quoted(listen.description))  # the HTTP API; a loopback address keeps it on this host",
        ]
        if let tls {
            lines += ["tls_cert = \(quoted(tls.cert))", "tls_key = \(quoted(tls.key))"]
        } else {
            lines.append("# tls_cert = \"/etc/fencegate/cert.pem\"  # both or neither; needed off loopback")
            lines.append("# tls_key = \"/etc/fencegate/key.pem\"    # unless allow_plain_http = true")
        }
        lines.append(
            "allow_plain_http = \(allowPlainHTTP)"
                + (allowPlainHTTP ? "  # bearer tokens cross the network in clear text" : "")
        )
        lines += [
            "",
            "[gateway]  # fence_xvm's gateway, in place of fence_virtd",
            "key_file = \(quoted(keyFile))  # the same file on every guest (see the README, \"Distributing the key\")",
            "hash = \"sha256\"  # weakest packet signature accepted: none, sha1, sha256, sha512",
            "auth = \"sha256\"  # challenge-response; must equal the guests'",
            "",
            "[gateway.multicast]  # what fence_xvm sends to",
            "address = \(quoted(multicastAddress))  # an IPv6 group such as ff05::3:1 selects IPv6",
            "port = \(multicastPort)",
        ]
        if let interface {
            lines.append("interface = \(quoted(interface))  # the guests' bridge")
        } else {
            lines.append("# interface = \"virbr0\"  # the guests' bridge; none given: the default route's interface")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The checks of `config init`'s answers: each turns the text typed (or given as an option) into a value,
/// or says what is wrong with it.
enum InitAnswer {
    /// libvirt's hypervisor drivers and remote transports, as URI schemes name them (`qemu+ssh`).
    static let drivers: Set<String> = [
        "qemu", "test", "lxc", "xen", "libxl", "vbox", "vmwareplayer", "vmwarews", "vmwarefusion", "esx", "gsx",
        "vpx", "bhyve", "ch", "openvz", "hyperv", "vz", "remote",
    ]
    static let transports: Set<String> = ["unix", "ssh", "libssh", "libssh2", "tcp", "tls", "ext"]

    /// A libvirt URI: `DRIVER[+TRANSPORT]://[HOST]/PATH`.
    static func uri(_ text: String) throws(AnswerError) -> String {
        let problem = AnswerError(
            "\"\(text)\" is not a libvirt URI: it starts with a driver, e.g. qemu:///system, "
                + "qemu+ssh://host/system or test:///default"
        )
        guard let separator = text.firstRange(of: "://"), !text.contains(where: \.isWhitespace) else { throw problem }
        let scheme = text[..<separator.lowerBound].split(separator: "+", omittingEmptySubsequences: false)
        guard scheme.count <= 2, drivers.contains(String(scheme[0])) else {
            throw AnswerError(
                "\"\(text[..<separator.lowerBound])\" is not a libvirt driver: use one of "
                    + drivers.sorted().joined(separator: ", ") + " (e.g. qemu:///system)"
            )
        }
        if scheme.count == 2, !transports.contains(String(scheme[1])) {
            throw AnswerError(
                "\"+\(scheme[1])\" is not a libvirt transport: use one of \(transports.sorted().joined(separator: ", "))"
            )
        }
        return text
    }

    /// A network interface's name, or `none` (nil).
    static func interface(_ text: String) throws(AnswerError) -> String? {
        if text == "none" { return nil }
        guard (1...15).contains(text.utf8.count), text != ".", text != "..",
            !text.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
        else {
            throw AnswerError(
                "\"\(text)\" is not an interface name (1 to 15 characters, no '/', ':' or spaces), or none"
            )
        }
        return text
    }

    /// A numeric IPv4 or IPv6 multicast group.
    static func multicastAddress(_ text: String) throws(AnswerError) -> String {
        guard let address = SocketAddress(host: text, port: 1229), address.isMulticast else {
            throw AnswerError(
                "\"\(text)\" is not a numeric multicast address (224.0.0.0 to 239.255.255.255, or IPv6 ff00::/8)"
            )
        }
        return text
    }

    /// A UDP or TCP port, 1 to 65535.
    static func port(_ text: String) throws(AnswerError) -> UInt16 {
        guard let port = UInt16(text), port > 0 else { throw AnswerError("\"\(text)\" is not a port (1 to 65535)") }
        return port
    }

    /// The HTTP API's address: numeric, with an optional port.
    static func listen(_ text: String) throws(AnswerError) -> ListenAddress {
        guard let address = ListenAddress(text) else {
            throw AnswerError(
                "\"\(text)\" is not a numeric address with an optional port, e.g. 127.0.0.1:8786 or [::1]:8786"
            )
        }
        return address
    }

    /// yes or no.
    static func yesOrNo(_ text: String) throws(AnswerError) -> Bool {
        switch text.lowercased() {
        case "y", "yes": return true
        case "n", "no": return false
        default: throw AnswerError("answer yes or no")
        }
    }

    /// A file that exists (a TLS certificate or key), by its absolute path; `none` (nil) if `allowingNone`.
    static func existingFile(_ text: String, allowingNone: Bool) throws(AnswerError) -> String? {
        if allowingNone, text == "none" { return nil }
        let path = try absolutePath(text)
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory else {
            throw AnswerError("\(path) is not a file\(allowingNone ? " (or answer none)" : "")")
        }
        return path
    }

    /// The key file: an absolute path in a directory that exists. An existing file must be a key `serve` would
    /// use; a missing one is created later. `creatingDirectory` is a directory `config init` creates if missing
    /// (the default's).
    static func keyFile(_ text: String, creatingDirectory: String? = nil) throws(AnswerError) -> String {
        let path = try absolutePath(text)
        if FileManager.default.fileExists(atPath: path) {
            do {
                _ = try KeyFile.read(at: path)
            } catch {
                throw AnswerError("\(error.description); or give another path, where a new key is written")
            }
            return path
        }
        let directory = path.parentPath
        if directory != creatingDirectory { try existingDirectory(of: path) }
        return path
    }

    /// Fails unless the directory `path` would be in exists.
    static func existingDirectory(of path: String) throws(AnswerError) {
        let directory = path.parentPath
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory
        else {
            throw AnswerError("the directory \(directory) does not exist: create it first, or give another path")
        }
    }

    /// `text` if it is an absolute path (`serve` runs from `/` under systemd, so relative paths would move).
    private static func absolutePath(_ text: String) throws(AnswerError) -> String {
        guard text.hasPrefix("/") else {
            throw AnswerError("\"\(text)\" is not an absolute path (starting with /): serve runs from / under systemd")
        }
        return text
    }
}
