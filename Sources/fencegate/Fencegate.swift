import ArgumentParser

/// The `fencegate` command: the daemon and the administrator's tools.
@main
struct Fencegate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fencegate",
        abstract:
            "Fence (power off, on, reboot) libvirt virtual machines that run as cluster nodes, with an audit log.",
        discussion: """
            Every power action and status check runs through the one fence service and is recorded in the \
            audit log before it runs and completed after.

            Exit codes: 0 success (status: on), 1 operation failed, 2 status: off, 4 domain not found, \
            5 hypervisor unavailable, 6 audit log unavailable, 7 timed out, 64 bad arguments.
            """,
        version: BuildVersion.description,
        subcommands: [
            Serve.self, Domains.self, Status.self, On.self, Off.self, Reboot.self, Audit.self, Token.self, Keygen.self,
            Doctor.self, Config.self, Key.self, ClusterCommand.self,
        ]
    )
}
