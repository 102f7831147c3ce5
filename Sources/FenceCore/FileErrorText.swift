import FoundationEssentials
import Glibc

/// A file-system error from FoundationEssentials (reading a file, creating a directory) as the system words
/// it, e.g. "No such file or directory": its `CocoaError` wraps the POSIX error, whose own description is a
/// type dump.
package func fileErrorText(_ error: any Error) -> String {
    if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
    guard let cocoa = error as? CocoaError else { return "\(error)" }
    if let posix = cocoa.userInfo["NSUnderlyingError"] as? POSIXError {
        return String(cString: strerror(posix.code.rawValue))
    }
    switch cocoa.code {
    case .fileReadInapplicableStringEncoding: return "it is not UTF-8 text"
    case .fileReadNoSuchFile, .fileNoSuchFile: return String(cString: strerror(ENOENT))
    case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
    default: return "error \(cocoa.code.rawValue)"
    }
}
