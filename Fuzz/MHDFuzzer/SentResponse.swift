/// One HTTP/1.x response as the server sent it.
struct SentResponse {
    let status: Int
    let headers: [(name: String, value: String)]
    /// Nil when the body was left out although the header fields announce one (the answer to HEAD).
    let body: [UInt8]?

    /// The first value of a header field (names compared without case).
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// Splits what the server sent on one connection into responses. Anything that is not a sequence of
/// well-formed HTTP/1.x responses (RFC 9112) fails a precondition: a status line `HTTP/1.x NNN reason`,
/// header fields `token: value`, an empty line, then the body as the header fields frame it
/// (Content-Length, chunked, or until the close). A body announced but absent, where the stream ends or the
/// next response starts, is taken as the answer to HEAD. A stream cut short fails a precondition, whose
/// message says whether the connection ended in a reset.
func responses(in stream: ReceivedStream) -> [SentResponse] {
    var reader = StreamReader(bytes: stream.bytes[...], endedInReset: stream.endedInReset)
    var responses: [SentResponse] = []
    while !reader.isAtEnd {
        responses.append(reader.response())
    }
    return responses
}

private struct StreamReader {
    var bytes: ArraySlice<UInt8>
    let endedInReset: Bool

    var isAtEnd: Bool { bytes.isEmpty }

    /// How the stream ended, for the message of a failure where it ends too soon.
    private var ending: String { endedInReset ? " (the connection ended in a reset)" : "" }

    mutating func response() -> SentResponse {
        let statusLine = line("status line")
        let status = Self.status(of: statusLine)
        var headers: [(name: String, value: String)] = []
        while true {
            let field = line("header field")
            if field.isEmpty { break }
            headers.append(Self.headerField(field))
        }
        let encoding = headers.first { $0.name.lowercased() == "transfer-encoding" }?.value
        let lengths = headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        let body: [UInt8]?
        if (100..<200).contains(status) || status == 204 || status == 304 {
            body = []
        } else if let encoding {
            precondition(encoding.lowercased() == "chunked", "a response with Transfer-Encoding \(encoding)")
            body = chunkedBody()
        } else if let declared = lengths.first {
            precondition(Set(lengths).count == 1, "a response with different Content-Length values")
            guard declared.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let length = Int(declared) else {
                preconditionFailure("a response with Content-Length \(declared)")
            }
            if bytes.isEmpty || bytes.starts(with: Self.responseStart) {
                body = nil
            } else {
                precondition(
                    bytes.count >= length,
                    "a body of \(bytes.count) bytes with Content-Length \(length)\(ending)"
                )
                body = Array(bytes.prefix(length))
                bytes = bytes.dropFirst(length)
            }
        } else {
            body = Array(bytes)
            bytes = []
        }
        return SentResponse(status: status, headers: headers, body: body)
    }

    static let responseStart = Array("HTTP/1.".utf8)

    /// The next line without its CRLF; a bare LF or a missing end fails a precondition.
    private mutating func line(_ what: String) -> ArraySlice<UInt8> {
        guard let end = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            preconditionFailure("a \(what) without an end\(ending): \(Self.show(bytes))")
        }
        precondition(end > bytes.startIndex && bytes[end - 1] == UInt8(ascii: "\r"), "a \(what) ending in a bare LF")
        let line = bytes[..<(end - 1)]
        bytes = bytes[(end + 1)...]
        return line
    }

    /// `HTTP/1.0` or `HTTP/1.1`, a space, three digits, a space, and a reason phrase (possibly empty).
    private static func status(of line: ArraySlice<UInt8>) -> Int {
        let text = Array(line)
        let versionOK = text.starts(with: responseStart) && text.count >= 13 && (text[7] == 0x30 || text[7] == 0x31)
        let codeOK =
            versionOK && text[8] == 0x20 && text[9..<12].allSatisfy { (0x30...0x39).contains($0) } && text[12] == 0x20
        precondition(codeOK && text[13...].allSatisfy(isFieldValueByte), "a malformed status line: \(show(line))")
        return Int(String(decoding: text[9..<12], as: UTF8.self))!
    }

    /// `token ":" OWS value OWS`, the value of visible characters, spaces and tabs (no obsolete folding).
    private static func headerField(_ line: ArraySlice<UInt8>) -> (name: String, value: String) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
            line[..<colon].allSatisfy(isTokenByte), line[(colon + 1)...].allSatisfy(isFieldValueByte)
        else {
            preconditionFailure("a malformed header field: \(show(line))")
        }
        let value = line[(colon + 1)...].drop { $0 == 0x20 || $0 == 0x09 }
        return (
            String(decoding: line[..<colon], as: UTF8.self),
            String(decoding: value.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed(), as: UTF8.self)
        )
    }

    /// Chunks (hexadecimal size, optional extensions, CRLF, data, CRLF) up to the last, empty one, then
    /// trailer fields and an empty line.
    private mutating func chunkedBody() -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = line("chunk size")
            let digits = sizeLine.prefix { $0 != UInt8(ascii: ";") }
            guard !digits.isEmpty, digits.count <= 15,
                let size = Int(String(decoding: digits, as: UTF8.self), radix: 16)
            else {
                preconditionFailure("a malformed chunk size: \(Self.show(sizeLine))")
            }
            if size == 0 { break }
            precondition(bytes.count >= size, "a chunk shorter than its size\(ending)")
            body += bytes.prefix(size)
            bytes = bytes.dropFirst(size)
            precondition(line("chunk end").isEmpty, "a chunk longer than its size")
        }
        while !line("trailer field").isEmpty {}
        return body
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (0x20...0x7E).contains(byte) || byte >= 0x80
    }

    /// The first bytes of `bytes`, printable, for a failure message.
    private static func show(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription
    }
}
