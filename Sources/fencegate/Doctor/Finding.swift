import FoundationEssentials

/// One result of `fencegate doctor`: what was checked, how it stands, and the exact fix when it is not OK.
struct Finding: Encodable, Equatable {
    enum Level: String, Encodable, Comparable {
        case ok = "OK"
        case warn = "WARN"
        case fail = "FAIL"

        private var rank: Int { self == .ok ? 0 : self == .warn ? 1 : 2 }
        static func < (left: Level, right: Level) -> Bool { left.rank < right.rank }
    }

    let level: Level
    /// Short name of the check, e.g. "bridge br0".
    let check: String
    let detail: String
    /// Commands or edits that fix it; nil when OK.
    let fix: String?

    static func ok(_ check: String, _ detail: String) -> Finding {
        Finding(level: .ok, check: check, detail: detail, fix: nil)
    }

    static func warn(_ check: String, _ detail: String, fix: String) -> Finding {
        Finding(level: .warn, check: check, detail: detail, fix: fix)
    }

    static func fail(_ check: String, _ detail: String, fix: String) -> Finding {
        Finding(level: .fail, check: check, detail: detail, fix: fix)
    }

    /// `LEVEL  check: detail`, then the fix indented under it.
    var text: String {
        var text = "\(level.rawValue.padded(toWidth: 5)) \(check): \(detail)"
        if let fix {
            let lines = fix.split(separator: "\n", omittingEmptySubsequences: false)
            text += "\n      fix: " + lines.joined(separator: "\n           ")
        }
        return text
    }
}
