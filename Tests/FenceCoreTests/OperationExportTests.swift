import FenceCore
import Foundation
import Store
import TestSupport
import Testing

/// A finished record whose requester and message are `text`.
private func record(requester: String, message: String?) -> AuditRecord {
    let requested = Date(timeIntervalSince1970: 1_800_000_000.25)
    return AuditRecord(
        id: 42,
        intent: AuditIntent(
            source: "http",
            requester: requester,
            clientAddress: "192.0.2.7",
            target: "pcmk1",
            domainName: "pcmk1",
            domainUUID: nil,
            action: "off",
            requestedAt: requested
        ),
        state: .finished,
        result: .success,
        powerState: "off",
        errorCode: nil,
        message: message,
        finishedAt: requested.addingTimeInterval(0.004),
        duration: .microseconds(4000)
    )
}

@Suite("Audit export formats")
struct OperationExportTests {
    @Test(
        "CSV quotes what needs it, keeps every character, and neutralizes formulas",
        arguments: [
            ("plain", "plain", false),
            ("a,b", "a,b", true),
            ("say \"hi\"", "say \"hi\"", true),
            ("two\nlines\r\nthree", "two\nlines\r\nthree", true),
            ("bell\u{07}escape\u{1B}[31m", "bell\u{07}escape\u{1B}[31m", true),
            ("ünïcødé ✓ 🦀", "ünïcødé ✓ 🦀", false),
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")", true),
            ("+1+1", "'+1+1", false),
            ("-2+3", "'-2+3", false),
            ("@SUM(A1)", "'@SUM(A1)", false),
            ("\tcmd", "'\tcmd", true),
            ("\r\n=1", "'\r\n=1", true),
            ("a=1", "a=1", false),
            // A quote that a combining mark follows is one Character with it, yet a quote to a CSV reader.
            ("x\"\u{301},=1", "x\"\u{301},=1", true),
        ]
    )
    func csvField(text: String, expected: String, quoted: Bool) throws {
        let row = OperationCSV.row(record(requester: text, message: text))
        #expect(row.hasSuffix("\r\n"))
        let parsed = try #require(parseCSV(OperationCSV.header(withHost: false) + row), "\(row)")
        #expect(parsed.count == 2)
        let fields = Dictionary(uniqueKeysWithValues: zip(parsed[0], parsed[1]))
        #expect(fields["requester"] == expected)
        #expect(fields["message"] == expected)
        // Quotes doubled scalar by scalar, as a CSV reader sees them.
        let doubled = String(
            String.UnicodeScalarView(expected.unicodeScalars.flatMap { $0 == "\"" ? ["\"", "\""] : [$0] })
        )
        #expect(row.contains("\"" + doubled + "\"") == quoted)
    }

    @Test("CSV and JSON carry the same fields, with the same names, as GET /operations")
    func sameFields() throws {
        let original = record(requester: "token-ops", message: nil)
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(OperationJSON(original))) as? [String: Any]
        )
        let csv = try #require(parseCSV(OperationCSV.header(withHost: false) + OperationCSV.row(original)))
        #expect(Set(object.keys) == Set(csv[0]))
        #expect(csv[0] == AuditRecord.exportedFieldNames)
        let fields = Dictionary(uniqueKeysWithValues: zip(csv[0], csv[1]))
        #expect(fields["id"] == "42")
        #expect(fields["requested_at"] == object["requested_at"] as? String)
        #expect(fields["finished_at"] == object["finished_at"] as? String)
        #expect(Double(fields["duration_seconds"] ?? "") == object["duration_seconds"] as? Double)
        #expect(fields["message"] == "" && object["message"] is NSNull)
        #expect(fields["power"] == "off")

        let clustered = try #require(
            parseCSV(OperationCSV.header(withHost: true) + OperationCSV.row(original, host: "=host2"))
        )
        #expect(clustered[0].last == "host" && clustered[1].last == "'=host2")
    }
}
