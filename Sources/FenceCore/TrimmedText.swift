extension StringProtocol where SubSequence == Substring {
    /// Without leading and trailing tabs and space separators (Unicode category Zs): what Foundation's
    /// `trimmingCharacters(in: .whitespaces)` removes.
    package var trimmingSpaces: Substring {
        trimming { $0 == "\t" || $0.properties.generalCategory == .spaceSeparator }
    }

    /// Without leading and trailing white space, line ends included (Unicode's White_Space property): what
    /// Foundation's `trimmingCharacters(in: .whitespacesAndNewlines)` removes.
    package var trimmingWhitespace: Substring {
        trimming { $0.properties.isWhitespace }
    }

    private func trimming(_ isTrimmed: (Unicode.Scalar) -> Bool) -> Substring {
        let whole = self[...]
        let scalars = whole.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isTrimmed($0) }) else { return whole[whole.endIndex...] }
        let last = scalars.lastIndex(where: { !isTrimmed($0) }) ?? first
        return Substring(scalars[first...last])
    }
}
