/// Unmounts `path` lazily (`umount -l`), so that a file still open cannot keep it mounted; blocks until done.
/// For the `deinit` of a filesystem a test mounted; failures are ignored (it may be gone already).
public func unmountLazily(_ path: String) {
    guard let pid = try? spawnProgram("/bin/umount", ["-l", path]) else { return }
    _ = waitForExit(pid)
}
