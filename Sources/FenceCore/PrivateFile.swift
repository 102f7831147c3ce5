import FoundationEssentials
import Glibc

/// A file only its owner may read and write (mode 0600), written whole or not at all.
public enum PrivateFile {
    /// Why a private file could not be written.
    public enum Failure: Error {
        /// The path exists and replacing it was not asked for.
        case exists(path: String)
        /// `step` (create, write, link, rename) failed with the system's reason.
        case cannotWrite(path: String, step: String, reason: String)
    }

    /// Writes `bytes` to `path` with mode 0600.
    ///
    /// The bytes go to a temporary file in the same directory, flushed to disk, then renamed into place, so
    /// `path` never holds part of them. Without `replacing`, an existing file is left untouched, even one that
    /// appears while this runs (the temporary file is linked, which fails if the path exists).
    public static func write(_ bytes: [UInt8], to path: String, replacing: Bool) throws(Failure) {
        if !replacing, FileManager.default.fileExists(atPath: path) { throw .exists(path: path) }
        let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        func failure(_ step: String) -> Failure {
            .cannotWrite(path: path, step: step, reason: String(cString: strerror(errno)))
        }
        let descriptor = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("create") }
        let ok = writeAll(bytes, to: descriptor) && fsync(descriptor) == 0
        let writeFailure = ok ? nil : failure("write")
        close(descriptor)
        if let writeFailure {
            unlink(temporary)
            throw writeFailure
        }
        if !replacing {
            guard link(temporary, path) == 0 else {
                let error = errno == EEXIST ? Failure.exists(path: path) : failure("link")
                unlink(temporary)
                throw error
            }
            unlink(temporary)
        } else if rename(temporary, path) != 0 {
            let error = failure("rename")
            unlink(temporary)
            throw error
        }
    }
}

/// Writes every byte to `descriptor`, retrying after EINTR; false on any other error (errno says which).
private func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
    bytes.withUnsafeBytes { buffer in
        var written = 0
        while written < buffer.count {
            let result = write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            written += result
        }
        return true
    }
}
