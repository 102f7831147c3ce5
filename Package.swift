// swift-tools-version:6.0
import PackageDescription

/// Settings shared by every Swift target: Swift 6 mode plus the upcoming features we hold ourselves to.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    // A section per function, so that the linker can place the code run at start-up and per request together
    // (see `releaseLinkerSettings`).
    .unsafeFlags(["-Xfrontend", "-function-sections"], .when(platforms: [.linux], configuration: .release)),
]

/// Release link of `fencegate` on Linux: lld with packed relative relocations (RELR: 20 KiB instead of 2 MiB of
/// `.rela.dyn` that the loader reads at every start) and the functions that `serve` runs at start-up and per
/// request placed first, in the order of scripts/fencegate.order (made by scripts/link-order), the compiler's
/// private functions grouped (scripts/fencegate.ld). The kernel maps code 64 KiB around each page that is
/// touched; packed, that code is a few MiB resident instead of 14. scripts/build-release adds what has to reach
/// the dependencies' compilations too (function sections, no Foundation).
let releaseLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(
        [
            "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/scripts/fencegate.order",
            "-Xlinker", "--no-warn-symbol-ordering",
            "-Xlinker", "-T", "-Xlinker", "\(Context.packageDirectory)/scripts/fencegate.ld",
            // SwiftPM exports every global symbol of an executable (about 9,300 here); nothing loads this binary
            // or looks its symbols up, and each library's symbol lookups at start-up went through that table.
            "-Xlinker", "--no-export-dynamic",
        ],
        .when(platforms: [.linux], configuration: .release)
    )
]

let package = Package(
    name: "fencegate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fencegate", targets: ["fencegate"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, each imported by exactly one Swift module.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd", providers: [.apt(["libmicrohttpd-dev"])]),
        .systemLibrary(name: "CLibcrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // No pkgConfig: libcpg.pc asks for -pthread, which SwiftPM refuses with a warning; the headers are
        // in /usr/include/corosync and the module map names the libraries.
        .systemLibrary(name: "CCorosync", providers: [.apt(["libcpg-dev", "libvotequorum-dev"])]),

        .target(name: "Locking", swiftSettings: swiftSettings),
        .target(
            name: "Store",
            dependencies: [
                "CSQLite",
                "Locking",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FenceCore",
            dependencies: [
                "Locking",
                "CLibvirt",
                "CLibcrypto",
                "Store",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FenceAPI",
            dependencies: [
                "Locking",
                "FenceCore",
                "Store",
                "CMicroHTTPD",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MulticastGateway",
            dependencies: [
                "Locking",
                "FenceCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Cluster",
            dependencies: [
                "Locking",
                "FenceCore",
                "Store",
                "CCorosync",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fencegate",
            dependencies: [
                "FenceCore",
                "Store",
                "FenceAPI",
                "MulticastGateway",
                "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: releaseLinkerSettings,
            plugins: ["BuildVersion"]
        ),
        // Writes fencegate's version (VERSION) and git revision into it before each build (`--version`).
        .plugin(name: "BuildVersion", capability: .buildTool(), path: "Plugins/BuildVersion"),

        .target(
            name: "CTestSupport",
            path: "Tests/CTestSupport"
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "CTestSupport",
                "FenceCore",
                "Store",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fencegate-bench",
            dependencies: [
                "Store",
                "FenceCore",
                "MulticastGateway",
                "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Fuzz targets: a corpus replayer in normal builds; libFuzzer entry points with
        // `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING` (Fuzz/run).
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport", swiftSettings: swiftSettings),
        .executableTarget(
            name: "fuzz-cluster-wire",
            dependencies: ["FuzzSupport", "Cluster"],
            path: "Fuzz/ClusterWireFuzzer",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fuzz-fence-xvm",
            dependencies: ["FuzzSupport", "MulticastGateway"],
            path: "Fuzz/FenceXVMFuzzer",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fuzz-challenge-response",
            dependencies: ["FuzzSupport", "MulticastGateway"],
            path: "Fuzz/ChallengeResponseFuzzer",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "APIFuzzSupport",
            dependencies: [
                "FuzzSupport", "FenceAPI", "FenceCore", "Store", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Fuzz/APIFuzzSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fuzz-http",
            dependencies: ["FuzzSupport", "APIFuzzSupport", "FenceAPI"],
            path: "Fuzz/HTTPFuzzer",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fuzz-mhd",
            dependencies: [
                "FuzzSupport", "APIFuzzSupport", "FenceAPI", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Fuzz/MHDFuzzer",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StoreTests",
            dependencies: ["Store", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FenceCoreTests",
            dependencies: [
                "FenceCore", "Locking", "Store", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FenceAPITests",
            dependencies: [
                "Cluster", "FenceAPI", "FenceCore", "Store", "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MulticastGatewayTests",
            dependencies: ["MulticastGateway", "FenceCore", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GatewayInteropTests",
            dependencies: ["fencegate", "MulticastGateway", "Store", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FencegateCLITests",
            dependencies: ["fencegate", "Store", "TestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
