import FoundationEssentials
import Glibc

/// Who besides its owner may read or write a file that holds a secret (a key) or evidence (the audit log).
public struct FileAccess: Sendable, Equatable {
    /// The permission bits (e.g. 0o600).
    public let permissions: UInt16
    /// The owner's user id.
    public let owner: UInt32

    /// The file's access, or nil if it does not exist (a symbolic link is followed).
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        permissions = UInt16(info.st_mode & 0o7777)
        owner = info.st_uid
    }

    public init(permissions: UInt16, owner: UInt32? = nil) {
        self.permissions = permissions
        self.owner = owner ?? geteuid()
    }

    /// Group or others may change it: a key could be replaced, the audit log rewritten.
    public var othersCanWrite: Bool { permissions & 0o022 != 0 }

    /// Group or others may read it.
    public var othersCanRead: Bool { permissions & 0o044 != 0 }

    /// The mode as `chmod` prints it, e.g. "0644".
    public var octal: String { "0" + String(permissions, radix: 8) }

    /// Owned by root or by the user this process runs as.
    public var isOwnedByTrustedUser: Bool { owner == 0 || owner == geteuid() }
}

/// Why a file's location cannot be trusted with a secret or with evidence: someone other than root and the
/// service's own user could replace the file or what leads to it.
public enum UntrustedLocation: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path is a symbolic link (refused where the file is created or written through it).
    case symbolicLink(path: String)
    /// The file belongs to another user.
    case foreignOwner(path: String, owner: UInt32)
    /// A directory on the way to the file belongs to another user.
    case foreignDirectoryOwner(directory: String, owner: UInt32)
    /// A directory on the way to the file may be written by group or others (and is not sticky), so they
    /// could rename the file away and put their own in its place.
    case writableDirectory(directory: String, mode: String)

    public var description: String {
        switch self {
        case .symbolicLink(let path):
            return
                "\(path) is a symbolic link; give the real path (a link could point the service at a file of someone else's choosing)"
        case .foreignOwner(let path, let owner):
            return
                "\(path) belongs to user \(owner), neither root nor the user running fencegate (\(geteuid())); fix with: chown \(geteuid()) \(path)"
        case .foreignDirectoryOwner(let directory, let owner):
            return
                "the directory \(directory) belongs to user \(owner), neither root nor the user running fencegate (\(geteuid())): that user could replace what it holds"
        case .writableDirectory(let directory, let mode):
            return
                "the directory \(directory) has mode \(mode): group or others could replace what it holds; fix with: chmod go-w \(directory)"
        }
    }

    /// Checks the file at `path` (if it exists) and every directory from its own up to `/`: each must
    /// belong to root or to this process's user, and no directory may be writable by group or others
    /// unless it is sticky (as `/tmp`). Symbolic links in directories are resolved first; a symbolic link
    /// at `path` itself is refused unless `followingLink`, and then it must belong to a trusted user too and
    /// both its own directory and its target's are checked. With `exclusiveDirectory`, the file's own
    /// directory may not be writable by others even if sticky: a database's `-wal` and `-shm` files are
    /// created there by name, and a sticky directory lets others create those names first.
    public static func check(
        _ path: String,
        followingLink: Bool,
        exclusiveDirectory: Bool = false
    ) -> UntrustedLocation? {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var info = stat()
        if lstat(absolute, &info) == 0 {
            if info.st_uid != 0, info.st_uid != geteuid() {
                return .foreignOwner(path: path, owner: info.st_uid)
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                guard followingLink else { return .symbolicLink(path: path) }
                guard let target = realpath(absolute, nil) else { return nil }  // dangling: reading it fails anyway
                defer { free(target) }
                if let problem = check(String(cString: target), followingLink: false) { return problem }
            }
        }
        return checkDirectories(of: absolute, exclusive: exclusiveDirectory)
    }

    private static func checkDirectories(of absolutePath: String, exclusive: Bool) -> UntrustedLocation? {
        let parent = absolutePath.parentPath
        // Missing: creating it fails, and says so.
        guard let resolved = realpath(parent.isEmpty ? "/" : parent, nil) else { return nil }
        defer { free(resolved) }
        var directory = String(cString: resolved)
        var isOwnDirectory = true
        while true {
            var info = stat()
            if stat(directory, &info) == 0 {
                if info.st_uid != 0, info.st_uid != geteuid() {
                    return .foreignDirectoryOwner(directory: directory, owner: info.st_uid)
                }
                let mode = UInt16(info.st_mode & 0o7777)
                let sticky = mode & UInt16(S_ISVTX) != 0 && !(exclusive && isOwnDirectory)
                if mode & 0o022 != 0, !sticky {
                    return .writableDirectory(directory: directory, mode: "0" + String(mode, radix: 8))
                }
            }
            guard directory != "/" else { return nil }
            directory = directory.parentPath
            if directory.isEmpty { directory = "/" }
            isOwnDirectory = false
        }
    }
}
