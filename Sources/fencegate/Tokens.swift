import ArgumentParser
import FenceCore
import FoundationEssentials
import Glibc
import Logging

/// `fencegate token …`: API tokens for the HTTP front end.
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API tokens (stored as SHA-256 digests in the audit database).",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print its secret once.",
            discussion: "Give the secret to the client as 'Authorization: Bearer SECRET'. It cannot be shown again."
        )

        @Argument(help: "A unique name (letters, digits, '.', '_', '-'); it is the requester in the audit log.")
        var name: String

        @Option(help: "read: list, status, audit log; fence: also off, on, reboot.")
        var scope = ScopeArgument(.read)

        @Option(
            help: ArgumentHelp(
                "Comma-separated domain-name patterns (* and ? wildcards) the token may see and act on; default all.",
                valueName: "glob,…"
            )
        )
        var domains: String?

        @Option(
            help: ArgumentHelp(
                "The domain (name or UUID) of the cluster node that will use the token: its requests come from that domain, so a fence race with it can be settled (see \"Fence races\").",
                valueName: "domain"
            )
        )
        var from: String?

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let logger = global.makeLogger(defaultLevel: .warning)
            try await reportingFailures {
                let context = try await ServiceContext.open(global, logger: logger)
                // Empty pieces are kept, so that `--domains ''` or `--domains ,` is refused rather than read as
                // "no pattern", which would mean every domain.
                let patterns =
                    domains.map {
                        $0.split(separator: ",", omittingEmptySubsequences: false).map {
                            String($0.trimmingSpaces)
                        }
                    } ?? []
                do {
                    let issued = try await AccessTokens(store: context.store).create(
                        name: name,
                        scope: scope.scope,
                        domainPatterns: patterns,
                        fromDomain: from
                    )
                    print(issued.secret)
                    let reach = patterns.isEmpty ? "all domains" : "domains \(patterns.joined(separator: ", "))"
                    let node = from.map { ", used by domain \($0)" } ?? ""
                    printNote(
                        "token '\(name)' created with scope \(scope.scope.rawValue) for \(reach)\(node); the secret above is shown only once"
                    )
                } catch let error as TokenManagementError {
                    throw CLIFailure.other(error.description)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")

        @Flag(help: "Print the list as JSON.") var json = false
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let logger = global.makeLogger(defaultLevel: .warning)
            try await reportingFailures {
                let context = try await ServiceContext.open(global, logger: logger)
                let tokens = try await AccessTokens(store: context.store).list()
                if json {
                    print(try JSONText.encode(tokens.map(TokenJSON.init)))
                    return
                }
                print(
                    Table.render(
                        header: ["NAME", "SCOPE", "DOMAINS", "CREATED", "REVOKED"],
                        rows: tokens.map {
                            [
                                $0.name, $0.scope.rawValue,
                                $0.domainPatterns.isEmpty ? "*" : $0.domainPatterns.joined(separator: ","),
                                RFC3339.format($0.createdAt), $0.revokedAt.map(RFC3339.format) ?? "-",
                            ]
                        }
                    )
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token; a running server refuses it from the next request on."
        )

        @Argument(help: "The token's name.") var name: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let logger = global.makeLogger(defaultLevel: .warning)
            try await reportingFailures {
                let context = try await ServiceContext.open(global, logger: logger)
                do {
                    try await AccessTokens(store: context.store).revoke(name: name)
                    print("token '\(name)' revoked")
                } catch let error as TokenManagementError {
                    throw CLIFailure.other(error.description)
                }
            }
        }
    }
}

/// A `TokenScope` as a command-line argument.
struct ScopeArgument: ExpressibleByArgument {
    let scope: TokenScope

    init(_ scope: TokenScope) {
        self.scope = scope
    }

    init?(argument: String) {
        guard let scope = TokenScope(rawValue: argument) else { return nil }
        self.scope = scope
    }

    var defaultValueDescription: String { scope.rawValue }

    static var allValueStrings: [String] { TokenScope.allCases.map(\.rawValue) }
}

struct TokenJSON: Encodable {
    let name: String
    let scope: String
    let domains: [String]
    let createdAt: String
    let revokedAt: String?
    let from: String?

    init(_ token: AccessToken) {
        name = token.name
        scope = token.scope.rawValue
        domains = token.domainPatterns
        from = token.fromDomain?.text
        createdAt = RFC3339.format(token.createdAt)
        revokedAt = token.revokedAt.map(RFC3339.format)
    }
}

/// A remark for the person at the terminal, on stderr so stdout stays machine-readable.
func printNote(_ message: String) {
    write("fencegate: \(message)\n", to: STDERR_FILENO)
}
