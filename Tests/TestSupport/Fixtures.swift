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
