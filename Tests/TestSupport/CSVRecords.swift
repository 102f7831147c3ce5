/// A strict RFC 4180 reader for tests: records end in CRLF, quoted fields may hold anything (`""` is a quote);
/// an unquoted field may hold no quote, CR or LF. Nil for text that breaks these rules.
public func parseCSV(_ text: String) -> [[String]]? {
    var records: [[String]] = []
    var record: [String] = []
    var field = ""
    var scalars = Array(text.unicodeScalars)[...]
    while !scalars.isEmpty {
        if scalars.first == "\"" {
            scalars.removeFirst()
            while true {
                guard let next = scalars.popFirst() else { return nil }
                if next == "\"" {
                    if scalars.first == "\"" {
                        scalars.removeFirst()
                        field.unicodeScalars.append("\"")
                    } else {
                        break
                    }
                } else {
                    field.unicodeScalars.append(next)
                }
            }
        } else {
            while let next = scalars.first, next != ",", next != "\r" {
                if next == "\"" || next == "\n" { return nil }
                field.unicodeScalars.append(scalars.removeFirst())
            }
        }
        guard let separator = scalars.popFirst() else { return nil }  // the last record ends in CRLF too
        record.append(field)
        field = ""
        if separator == "\r" {
            guard scalars.popFirst() == "\n" else { return nil }
            records.append(record)
            record = []
        } else if separator != "," {
            return nil
        }
    }
    return record.isEmpty ? records : nil
}
