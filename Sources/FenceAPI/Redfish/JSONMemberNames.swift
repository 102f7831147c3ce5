/// The names of a JSON object's members, unescaped, in order, repeats kept, for a body that `JSONDecoder` has
/// already accepted (a decoded object keeps one value per name and does not tell which). `names` is nil if the
/// text is not an object.
struct JSONMemberNames {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var names: [String]? {
        var scanner = self
        return scanner.scanObject()
    }

    private mutating func scanObject() -> [String]? {
        skipSpace()
        guard next() == UInt8(ascii: "{") else { return nil }
        var names: [String] = []
        skipSpace()
        if peek() == UInt8(ascii: "}") { return names }
        while true {
            skipSpace()
            guard let name = scanString() else { return nil }
            names.append(name)
            skipSpace()
            guard next() == UInt8(ascii: ":"), skipValue() else { return nil }
            skipSpace()
            switch next() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "}"): return names
            default: return nil
            }
        }
    }

    /// A string at `index` (its opening quote), unescaped; nil if there is none.
    private mutating func scanString() -> String? {
        guard next() == UInt8(ascii: "\"") else { return nil }
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() {
            scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
            raw.removeAll()
        }
        while let byte = next() {
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                flush()
                guard let escaped = next() else { return nil }
                switch escaped {
                case UInt8(ascii: "u"):
                    guard var unit = scanHex4() else { return nil }
                    if (0xD800..<0xDC00).contains(unit), index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                        bytes[index + 1] == UInt8(ascii: "u")
                    {
                        let mark = index
                        index += 2
                        if let low = scanHex4(), (0xDC00..<0xE000).contains(low) {
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = mark  // a lone high surrogate; what follows is read on its own
                        }
                    }
                    scalars.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                default: scalars.append(Unicode.Scalar(escaped))  // \" \\ \/
                }
            default:
                raw.append(byte)
            }
        }
        return nil
    }

    private mutating func scanHex4() -> UInt32? {
        guard index + 4 <= bytes.count,
            let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
        else { return nil }
        index += 4
        return value
    }

    /// Skips one value (a string, an object or array with all it holds, a number or literal).
    private mutating func skipValue() -> Bool {
        skipSpace()
        switch peek() {
        case UInt8(ascii: "\""):
            return scanString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while let byte = peek() {
                if byte == UInt8(ascii: "\"") {
                    guard scanString() != nil else { return false }
                    continue
                }
                index += 1
                if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") { depth += 1 }
                if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") { depth -= 1 }
                if depth == 0 { return true }
            }
            return false
        case nil:
            return false
        default:
            while let byte = peek(), !",}] \t\r\n".utf8.contains(byte) { index += 1 }
            return true
        }
    }

    private mutating func skipSpace() {
        while let byte = peek(), " \t\r\n".utf8.contains(byte) { index += 1 }
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func next() -> UInt8? {
        defer { if index < bytes.count { index += 1 } }
        return peek()
    }
}
