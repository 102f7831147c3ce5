import Foundation

/// Files under Tests/Fixtures.
public enum Fixtures {
    /// The absolute path of `Tests/Fixtures/NAME`.
    public static func path(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent(name).path
    }

    /// `test:///…/cluster.xml`: libvirt's test driver with six running nodes (pcmk1…pcmk6), `stopped1`
    /// (shut off), `transient1` (transient) and `paused1` (paused). Each connection gets its own world.
    public static var clusterURI: String { "test://" + path("cluster.xml") }

    /// `test:///…/identity.xml`: domains whose names differ only in ASCII case (`web1`, `WEB1`) or in Unicode
    /// normalization (`café` with U+00E9, `café` as e + U+0301), and `Db1`; all running.
    public static var identityURI: String { "test://" + path("identity.xml") }

    /// UUIDs of the identity fixture's domains. Keyed by a description, not by name: Swift's `String`
    /// equality is canonical equivalence, so the two cafés would be one key.
    public static let identityUUIDs: [String: String] = [
        "web1": "a1a1a1a1-0000-4000-8000-000000000001",
        "WEB1": "a1a1a1a1-0000-4000-8000-000000000002",
        "café precomposed": "a1a1a1a1-0000-4000-8000-000000000003",
        "café decomposed": "a1a1a1a1-0000-4000-8000-000000000004",
        "Db1": "a1a1a1a1-0000-4000-8000-000000000005",
    ]

    /// `test:///…/race.xml`: node1, node2 (with interfaces on a network, so the test driver reports their
    /// addresses: 198.18.0.11 and 198.18.0.31) and node3 (no interface); all running.
    public static var raceURI: String { "test://" + path("race.xml") }

    /// UUIDs of the race fixture's domains, by name.
    public static let raceUUIDs: [String: String] = [
        "node1": "d1d1d1d1-0000-4000-8000-000000000001",
        "node2": "d1d1d1d1-0000-4000-8000-000000000002",
        "node3": "d1d1d1d1-0000-4000-8000-000000000003",
    ]

    /// UUIDs of the fixture's domains, by name.
    public static let uuids: [String: String] = [
        "pcmk1": "11111111-1111-4111-8111-111111111111",
        "pcmk2": "22222222-2222-4222-8222-222222222222",
        "pcmk3": "33333333-3333-4333-8333-333333333333",
        "pcmk4": "44444444-4444-4444-8444-444444444444",
        "pcmk5": "55555555-5555-4555-8555-555555555555",
        "pcmk6": "66666666-6666-4666-8666-666666666666",
        "stopped1": "77777777-7777-4777-8777-777777777777",
        "transient1": "88888888-8888-4888-8888-888888888888",
        "paused1": "99999999-9999-4999-8999-999999999999",
    ]
}

/// The package's root directory.
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
