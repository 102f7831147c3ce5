import Foundation

/// Who besides its owner may read or write a file that holds a secret (a key) or evidence (the audit log).
public struct FileAccess: Sendable, Equatable {
    /// The permission bits (e.g. 0o600).
    public let permissions: UInt16

    /// The file's access, or nil if it does not exist (a symbolic link is followed).
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        permissions = UInt16(info.st_mode & 0o7777)
    }

    public init(permissions: UInt16) {
        self.permissions = permissions
    }

    /// Group or others may change it: a key could be replaced, the audit log rewritten.
    public var othersCanWrite: Bool { permissions & 0o022 != 0 }

    /// Group or others may read it.
    public var othersCanRead: Bool { permissions & 0o044 != 0 }

    /// The mode as `chmod` prints it, e.g. "0644".
    public var octal: String { "0" + String(permissions, radix: 8) }
}
