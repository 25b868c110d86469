// swift-tools-version: 6.0
import PackageDescription
import Foundation

let package = Package(
    name: "MailGate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mailgate", targets: ["mailgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Debian C libraries, through pkg-config (installed by bin/setup).
        .systemLibrary(name: "CLDNS", pkgConfig: "ldns",
                       providers: [.apt(["libldns-dev"])]),
        .systemLibrary(name: "COpenDKIM", pkgConfig: "opendkim",
                       providers: [.apt(["libopendkim-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CIDN2", pkgConfig: "libidn2",
                       providers: [.apt(["libidn2-dev"])]),
        // libxcrypt's crypt(3), for the passwd-file's hashes.
        .systemLibrary(name: "CCrypt", pkgConfig: "libxcrypt",
                       providers: [.apt(["libcrypt-dev"])]),

        .target(name: "SMTPProtocol",
                dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "DNSResolver",
                dependencies: ["CLDNS", "CIDN2", "SMTPProtocol",
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOPosix", package: "swift-nio"),
                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),
        .target(name: "MailAuth", dependencies: ["COpenDKIM", "DNSResolver", "SMTPProtocol",
                                                 .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),
        // glibc's memmem, for the log's byte searches.
        .target(name: "CByteSearch"),
        .target(name: "DecisionLog", dependencies: ["CLibCrypto", "CByteSearch", "SMTPProtocol"]),
        .target(name: "PolicyEngine",
                dependencies: ["SMTPProtocol", "DecisionLog", "DNSResolver", .product(name: "NIOCore", package: "swift-nio"), .product(name: "Yams", package: "Yams")]),
        // The PostgreSQL URL and error text every PostgreSQL user shares.
        .target(name: "PostgresSupport",
                dependencies: [.product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log")]),
        // The decision log's shared PostgreSQL sink: ships the local log, reads it back.
        .target(name: "LogSink",
                dependencies: ["DecisionLog", "PostgresSupport",
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log")]),
        .target(name: "Greylist",
                dependencies: ["CSQLite", "SMTPProtocol", "PostgresSupport",
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),
        .target(name: "Checks", dependencies: ["PolicyEngine", "SMTPProtocol", "DNSResolver", "MailAuth", "Greylist", .product(name: "Yams", package: "Yams"),
                                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),
        .target(name: "Gateway",
                dependencies: [
                    "SMTPProtocol", "PolicyEngine", "Checks", "DecisionLog", "LogSink", "PostgresSupport",
                    "DNSResolver", "MailAuth", "Greylist", "CCrypt",
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "NIOPosix", package: "swift-nio"),
                    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                    .product(name: "NIOTLS", package: "swift-nio"),
                    .product(name: "NIOHTTP1", package: "swift-nio"),
                    .product(name: "NIOSSL", package: "swift-nio-ssl"),
                    .product(name: "Yams", package: "Yams"),
                    .product(name: "Metrics", package: "swift-metrics"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                ]),
        .executableTarget(name: "mailgate",
                          dependencies: [
                              "Gateway", "DecisionLog", "LogSink", "DNSResolver", "MailAuth", "Greylist",
                              .product(name: "ArgumentParser", package: "swift-argument-parser"),
                              .product(name: "Logging", package: "swift-log"),
                          ]),

        .testTarget(name: "SMTPProtocolTests", dependencies: ["SMTPProtocol"]),
        .testTarget(name: "DecisionLogTests", dependencies: ["DecisionLog"]),
        .testTarget(name: "DNSResolverTests", dependencies: ["DNSResolver", "SMTPProtocol",
                                                            .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "MailAuthTests", dependencies: ["MailAuth", "DNSResolver", "SMTPProtocol"],
                    exclude: ["dkimtool.py"]),
        // Starts a Debian PostgreSQL on loopback for the tests that need one.
        .target(name: "PostgresTestServer", path: "Tests/Support/PostgresTestServer"),
        .testTarget(name: "GreylistTests", dependencies: ["Greylist", "SMTPProtocol", "PostgresTestServer",
                                                          .product(name: "PostgresNIO", package: "postgres-nio")]),
        .testTarget(name: "PolicyEngineTests", dependencies: ["PolicyEngine", "Checks", "SMTPProtocol", "DNSResolver"]),
        .testTarget(name: "ChecksTests", dependencies: ["Checks", "PolicyEngine", "SMTPProtocol", "DNSResolver"]),
        .testTarget(name: "GatewayTests",
                    dependencies: [
                        "Gateway", "Checks", "DecisionLog", "LogSink", "SMTPProtocol", "DNSResolver", "PolicyEngine", "Greylist", "PostgresTestServer",
                        .product(name: "NIOCore", package: "swift-nio"),
                        .product(name: "NIOPosix", package: "swift-nio"),
                    ]),
    ]
)

// libFuzzer targets (Fuzz/, run by fuzz/run): only with MAILGATE_FUZZ=1 in the environment,
// built into .build-fuzz with -sanitize=fuzzer, so normal builds and tests never see them.
if ProcessInfo.processInfo.environment["MAILGATE_FUZZ"] != nil {
    let fuzzTargets: [(String, [String])] = [
        ("fuzz-command", ["SMTPProtocol"]), ("fuzz-data", ["SMTPProtocol"]), ("fuzz-dns", ["DNSResolver"]),
        ("fuzz-spf", ["MailAuth"]), ("fuzz-rules", ["PolicyEngine"]), ("fuzz-log", ["DecisionLog"]),
        ("fuzz-dkim", ["MailAuth", "DNSResolver"]), ("fuzz-config", ["Gateway"]),
    ]
    for (name, deps) in fuzzTargets {
        var dependencies: [Target.Dependency] = deps.map { .target(name: $0) }
        if name == "fuzz-data" || name == "fuzz-command" { dependencies.append(.product(name: "NIOCore", package: "swift-nio")) }
        package.targets.append(.executableTarget(name: name, dependencies: dependencies, path: "Fuzz/\(name)",
                                                 swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
