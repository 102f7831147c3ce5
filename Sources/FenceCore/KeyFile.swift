import FoundationEssentials
import Glibc
public import Store

/// The shared secret that fence_xvm and the multicast gateway sign with: raw bytes, usually 4096 random ones.
public enum KeyFile {
    /// How many bytes `generate` writes, and the most that fence_xvm and fence_virtd ever read from a key file.
    public static let standardSize = 4096

    /// Why a key file could not be written.
    public enum Failure: Error, CustomStringConvertible {
        case exists(path: String)
        case cannotWrite(path: String, reason: String)

        public var description: String {
            switch self {
            case .exists(let path):
                return "\(path) already exists; pass --force to replace it (guests using the old key stop working)"
            case .cannotWrite(let path, let reason):
                return "cannot write key file \(path): \(reason)"
            }
        }
    }

    /// A key read from disk, and what is wrong with the file's mode if anything.
    public struct Contents: Sendable {
        /// The key: the file's first `standardSize` bytes, as fence_xvm and fence_virtd read it.
        public let key: [UInt8]
        /// Set when group or others may read the file (anyone who can read it can fence every VM).
        public let warning: String?
    }

    /// Why a key file could not be used.
    public enum ReadFailure: Error, CustomStringConvertible {
        case missing(path: String)
        case unreadable(path: String, reason: String)
        case empty(path: String)
        /// Group or others may write it: anyone who could replace it could fence every VM.
        case writableByOthers(path: String, mode: String)
        /// It, or a directory on the way to it, could be replaced by another user.
        case untrusted(UntrustedLocation)

        public var description: String {
            switch self {
            case .missing(let path):
                return "the key file \(path) does not exist (create one with: fencegate keygen \(path))"
            case .unreadable(let path, let reason): return "cannot read the key file \(path): \(reason)"
            case .empty(let path): return "the key file \(path) is empty"
            case .writableByOthers(let path, let mode):
                return
                    "the key file \(path) has mode \(mode): group or others could replace the key; fix with: chmod 600 \(path)"
            case .untrusted(let problem):
                return "refusing the key file: \(problem)"
            }
        }
    }

    /// Reads the key at `path`. Refuses a file that group or others may write, or that another user than
    /// root and this one owns or could replace (see `UntrustedLocation`); a file others may read is used,
    /// with a warning (fence_virtd accepts any mode, so an existing host keeps working while it is fixed).
    public static func read(at path: String) throws(ReadFailure) -> Contents {
        // Opened once; mode and owner are those of the file actually read (fstat), not of whatever the path
        // named a moment before.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { throw .missing(path: path) }
            throw .unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw .unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        let access = FileAccess(permissions: UInt16(info.st_mode & 0o7777), owner: info.st_uid)
        if access.othersCanWrite { throw .writableByOthers(path: path, mode: access.octal) }
        if !access.isOwnedByTrustedUser { throw .untrusted(.foreignOwner(path: path, owner: info.st_uid)) }
        if let problem = UntrustedLocation.check(path, followingLink: true) { throw .untrusted(problem) }
        var key = [UInt8](repeating: 0, count: standardSize)
        var count = 0
        while count < key.count {
            let got = key.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if got == 0 { break }
            if got < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: String(cString: strerror(errno)))
            }
            count += got
        }
        key.removeLast(key.count - count)
        guard !key.isEmpty else { throw .empty(path: path) }
        let warning =
            access.othersCanRead
            ? "the key file \(path) has mode \(access.octal): group or others can read it and fence every VM; fix with: chmod 600 \(path)"
            : nil
        return Contents(key: key, warning: warning)
    }

    /// Writes `size` fresh random bytes to `path` with mode 0600 and returns them.
    ///
    /// The key is written as a `PrivateFile`, so `path` never holds a partial key. Without `replacing`, an
    /// existing file is left untouched.
    /// - Throws: `Failure`.
    @discardableResult
    public static func generate(at path: String, size: Int = standardSize, replacing: Bool = false) throws -> [UInt8] {
        if !replacing, FileManager.default.fileExists(atPath: path) { throw Failure.exists(path: path) }
        let key = try SecureRandom.bytes(count: size)
        do {
            try PrivateFile.write(key, to: path, replacing: replacing)
        } catch .exists(let path) {
            throw Failure.exists(path: path)
        } catch .cannotWrite(let path, let step, let reason) {
            throw Failure.cannotWrite(path: path, reason: "\(step): \(reason)")
        }
        return key
    }

    /// A short fingerprint to compare keys across hosts without revealing them: the first 16 bytes of
    /// SHA-256 over the bytes fence_xvm uses (at most the first 4096), in hex.
    public static func fingerprint(of key: [UInt8]) -> String {
        DigestAlgorithm.sha256.digest(Array(key.prefix(standardSize))).prefix(16).hexString
    }
}
