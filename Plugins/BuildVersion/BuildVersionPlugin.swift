import Foundation
import PackagePlugin

/// Writes `BuildVersion.swift` into the target before every build: the version in the package's VERSION file
/// and the git revision of its checkout (none outside git), so that `fencegate --version` says what it was built
/// from. A prebuild command, so it runs on every `swift build`, whatever changed; `scripts/build-version` rewrites
/// the file only when its text changes, so an unchanged revision recompiles nothing.
@main
struct BuildVersionPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let package = context.package.directoryURL
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        return [
            .prebuildCommand(
                displayName: "Writing the version and git revision of \(target.name)",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [
                    package.appending(path: "scripts/build-version").path(percentEncoded: false),
                    package.path(percentEncoded: false),
                    output.path(percentEncoded: false),
                ],
                outputFilesDirectory: output
            )
        ]
    }
}
