import FenceCore
import Foundation
import MulticastGateway
import Testing

/// fence_virt.conf read as fence_virtd reads it: the file Debian ships, configurations in the style of
/// fence_virt.conf(5), and the errors an administrator gets for what Fencegate cannot do.
@Suite("fence_virt.conf")
struct FenceVirtConfTests {
    private func read(_ text: String) throws(FenceVirtdConfigurationError) -> FenceVirtdConfiguration {
        try FenceVirtdConfiguration(text: text, path: "test.conf")
    }

    private func failure(_ text: String) -> FenceVirtdConfigurationError? {
        do {
            _ = try read(text)
            return nil
        } catch {
            return error
        }
    }

    @Test("Debian's shipped /etc/fence_virt.conf (fence-virtd package)")
    func debianDefault() throws {
        let path = "/etc/fence_virt.conf"
        try #require(
            FileManager.default.fileExists(atPath: path),
            "install fence-virtd (scripts/install-dependencies --tests)"
        )
        let configuration = try FenceVirtdConfiguration(contentsOf: path)
        #expect(configuration.listener == .multicast)
        #expect(configuration.keyFile == "/etc/fence_virt.key")
        #expect(configuration.libvirtURI == "qemu:///system")
        #expect(
            configuration.gateway.multicast
                == MulticastListenerConfiguration(group: "225.0.0.12", port: 1229, interface: "virbr0")
        )
        #expect(configuration.gateway.tcp == nil)
        #expect(configuration.gateway.minimumHash == .sha256 && configuration.gateway.auth == .sha256)
        #expect(configuration.gateway.groups.allowsEverything)
        #expect(configuration.ignored.isEmpty, "\(configuration.ignored)")
    }

    /// In the style of fence_virt.conf(5)'s example: one listener, a libvirt backend, a group with names,
    /// UUIDs and the members' addresses, comments.
    static let withGroups = """
        fence_virtd {
        \tlistener = "multicast";
        \tbackend = "libvirt";
        \tforeground = "yes";   # fence_virtd's own process
        }

        # the listeners section
        listeners {
        \tmulticast {
        \t\tkey_file = "/etc/cluster/fence_xvm.key";
        \t\thash = "SHA512";
        \t\tauth = "sha1";
        \t}
        \ttcp {
        \t\taddress = "127.0.0.1";
        \t}
        }

        backends {
        \tlibvirt {
        \t\turi = "qemu:///system";
        \t}
        }

        groups {
        \tgroup {
        \t\tname = "cluster-a";
        \t\tip = "198.18.0.2";
        \t\tip = "198.18.0.3";
        \t\tuuid = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        \t\tuuid = "node-a1";
        \t\tuuid = "node-a2";
        \t}
        \tgroup {
        \t\tip = "198.18.0.9";
        \t\tuuid = "node-b1";
        \t}
        }
        """

    @Test("a man-page style file with groups, comments and another listener's block")
    func manPageStyle() throws {
        let configuration = try read(Self.withGroups)
        #expect(configuration.keyFile == "/etc/cluster/fence_xvm.key")
        #expect(configuration.gateway.minimumHash == .sha512)
        #expect(configuration.gateway.auth == .sha1)
        #expect(configuration.gateway.multicast == MulticastListenerConfiguration())
        #expect(
            configuration.gateway.groups.groups == [
                .init(
                    name: "cluster-a",
                    requesters: ["198.18.0.2", "198.18.0.3"],
                    domains: ["6695eb01-f6a4-8304-79aa-97f2502e193f", "node-a1", "node-a2"]
                ),
                .init(name: "unnamed-2", requesters: ["198.18.0.9"], domains: ["node-b1"]),
            ]
        )
        #expect(configuration.gateway.groups.permits(requester: "198.18.0.3", domain: "NODE-A2"))
        #expect(!configuration.gateway.groups.permits(requester: "198.18.0.9", domain: "node-a1"))
        #expect(
            configuration.ignored == [
                "test.conf:4: fence_virtd/foreground is ignored: it concerns fence_virtd's own process (use --log-level and systemd here)",
                "test.conf:14: listeners/tcp is ignored: the listener in use is multicast",
            ]
        )
    }

    @Test("the tcp listener, IPv6: defaults to [::1]:1229")
    func tcpIPv6() throws {
        let configuration = try read(
            """
            fence_virtd { listener = "tcp"; backend = "libvirt"; }
            listeners { tcp { family = "ipv6"; key_file = "/k"; } }
            """
        )
        #expect(configuration.listener == .tcp)
        #expect(configuration.gateway.multicast == nil)
        #expect(configuration.gateway.tcp?.description == "[::1]:1229")
        #expect(configuration.libvirtURI == nil)
        let multicast6 = try read(
            """
            fence_virtd { listener = "multicast"; backend = "libvirt"; }
            listeners { multicast { family = "ipv6"; port = "1300"; interface = "br0"; } }
            """
        )
        #expect(
            multicast6.gateway.multicast
                == MulticastListenerConfiguration(group: "ff05::3:1", port: 1300, interface: "br0")
        )
        #expect(multicast6.keyFile == "/etc/cluster/fence_xvm.key")
    }

    @Test("syntax as fence_virtd's parser reads it: a value over two lines, '#' inside a name, any case")
    func syntax() throws {
        let file = try SimpleConfig(
            parsing:
                "# c\nFence_Virtd {\n listener = \"multi\ncast\"; back#end = \"x\"; }\nempty { }\nnamed = \"v\" { a = \"b\"; }"
        )
        #expect(file.root.blocks.map(\.name) == ["Fence_Virtd", "empty", "named"])
        #expect(file.root.blocks[0].assignments(named: "LISTENER").first?.value == "multi\ncast")
        #expect(file.root.blocks[0].assignments(named: "back#end").first?.line == 4)
        #expect(file.root.blocks[2].value == "v")
        let assignment = try #require(file.root.blocks[2].assignments.first)
        #expect(assignment.name == "a" && assignment.value == "b" && assignment.line == 6)
    }

    @Test(
        "clear errors with the line",
        arguments: [
            ("fence_virtd {\n listener = \"multicast\";\n", "line 1: '{' of 'fence_virtd' is never closed"),
            (
                "fence_virtd {\n listener = multicast;\n}",
                "line 2: 'listener =' must be followed by a value in double quotes, found 'multicast'"
            ),
            (
                "fence_virtd {\n listener = \"multicast\"\n}",
                "line 3: expected ';' after 'listener = \"multicast\"', found '}'"
            ),
            ("a = \"\";", "line 1: empty value \"\": fence_virtd cannot read it"),
            ("a = \"open", "line 1: a quoted value is never closed"),
            ("}", "line 1: '}' without a matching '{'"),
            ("# only a comment\n", "line 1: the file has no settings"),
        ]
    )
    func syntaxErrors(text: String, message: String) {
        #expect(failure(text)?.description == "test.conf:\(message.replacingOccurrences(of: "line ", with: ""))")
    }

    @Test(
        "what Fencegate cannot do, or a mistake, is refused with the line and what to do",
        arguments: [
            ("fence_virtd {\n listener = \"serial\";\n backend = \"libvirt\";\n}", "test.conf:2: the serial listener"),
            ("fence_virtd {\n listener = \"vsock\";\n backend = \"libvirt\";\n}", "test.conf:2: the vsock listener"),
            ("fence_virtd {\n listener = \"multicast\";\n backend = \"xen\";\n}", "test.conf:3: unknown backend"),
            ("fence_virtd { backend = \"libvirt\"; }", "test.conf:1: 'fence_virtd' sets no listener"),
            ("listeners { }", "test.conf: no 'fence_virtd { … }' section"),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\";\n listener = \"tcp\"; }",
                "test.conf:2: listener is set twice (lines 1 and 2)"
            ),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast {\n hash = \"md5\"; } }",
                "test.conf:3: hash \"md5\" is not one of none, sha1, sha256, sha512"
            ),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast {\n port = \"0\"; } }",
                "test.conf:3: port \"0\" is not a port number"
            ),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast {\n address = \"198.18.0.1\"; } }",
                "test.conf:3: address \"198.18.0.1\" is not a numeric multicast address"
            ),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast {\n family = \"ipv6\";\n address = \"225.0.0.12\"; } }",
                "test.conf:4: address \"225.0.0.12\" does not match family ipv6"
            ),
            (
                "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nbackends { libvirt {\n uri = \"qemu:///system\";\n uri1 = \"qemu+ssh://b/system\"; } }",
                "test.conf:4: uri1: several libvirt URIs are not supported"
            ),
        ]
    )
    func refusals(text: String, prefix: String) {
        let error = failure(text)
        #expect(error?.description.hasPrefix(prefix) == true, "\(String(describing: error))")
    }

    @Test("backend cpg: cluster mode, with the cpg block's uri; name_mode is noted as ignored")
    func cpgBackend() throws {
        let file = try FenceVirtdConfiguration(
            text: """
                fence_virtd {
                    listener = "multicast";
                    backend = "cpg";
                }
                listeners { multicast { key_file = "/etc/cluster/fence_xvm.key"; interface = "virbr0"; } }
                backends {
                    libvirt { uri = "qemu:///other"; }
                    cpg {
                        uri = "qemu:///system";
                        name_mode = "uuid";
                    }
                }
                """,
            path: "test.conf"
        )
        #expect(file.clusterName == "fencegate")
        #expect(file.libvirtURI == "qemu:///system")
        #expect(file.ignored.contains { $0.contains("backends/libvirt") && $0.contains("the backend in use is cpg") })
        #expect(file.ignored.contains { $0.contains("backends/cpg/name_mode") }, "\(file.ignored)")
    }
}
