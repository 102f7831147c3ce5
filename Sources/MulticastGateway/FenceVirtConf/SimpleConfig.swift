import FoundationEssentials

/// A file in fence_virtd's configuration syntax (fence_virt.conf(5)), parsed into a tree with line numbers.
///
/// The syntax, as fence_virtd's own parser reads it: `name = "value";` assignments and `name { … }` blocks
/// (also `name = "value" { … }`), nested freely; names are runs of characters other than blanks and
/// `{ } ; = "`; values are double-quoted, non-empty, without escapes (they may span lines); `#` where a
/// name could start begins a comment that runs to the end of the line. Names compare case-insensitively, as there.
public struct SimpleConfig: Sendable, Equatable {
    /// One `name = "value";`.
    public struct Assignment: Sendable, Equatable {
        public var name: String
        public var value: String
        public var line: Int
    }

    /// One `name { … }` block (the top level is a block without a name).
    public struct Block: Sendable, Equatable {
        public var name: String
        /// The `"value"` of `name = "value" { … }`, if given.
        public var value: String?
        public var line: Int
        public var assignments: [Assignment] = []
        public var blocks: [Block] = []

        /// Assignments called `name`, in file order.
        public func assignments(named name: String) -> [Assignment] {
            assignments.filter { $0.name.lowercased() == name.lowercased() }
        }

        /// Blocks called `name`, in file order.
        public func blocks(named name: String) -> [Block] {
            blocks.filter { $0.name.lowercased() == name.lowercased() }
        }
    }

    /// The top level.
    public var root: Block

    /// Parses `text`. - Throws: `SimpleConfigError` naming the line.
    public init(parsing text: String) throws(SimpleConfigError) {
        var parser = Parser(tokens: try Lexer.tokens(in: text))
        root = try parser.parseFile()
    }
}

/// Why a fence_virt.conf file could not be read, with the line it happened on.
public struct SimpleConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String

    public var description: String { "line \(line): \(message)" }
}

private enum Token: Equatable {
    case name(String)
    case value(String)
    case openBrace, closeBrace, semicolon, equals

    var shown: String {
        switch self {
        case .name(let name): return "'\(name)'"
        case .value(let value): return "\"\(value)\""
        case .openBrace: return "'{'"
        case .closeBrace: return "'}'"
        case .semicolon: return "';'"
        case .equals: return "'='"
        }
    }
}

private enum Lexer {
    static func tokens(in text: String) throws(SimpleConfigError) -> [(Token, Int)] {
        var tokens: [(Token, Int)] = []
        var line = 1
        let characters = Array(text.unicodeScalars)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            switch character {
            case "\n":
                line += 1
                index += 1
            case " ", "\t", "\r":
                index += 1
            case "#":
                while index < characters.count, characters[index] != "\n" { index += 1 }
            case "{":
                tokens.append((.openBrace, line))
                index += 1
            case "}":
                tokens.append((.closeBrace, line))
                index += 1
            case ";":
                tokens.append((.semicolon, line))
                index += 1
            case "=":
                tokens.append((.equals, line))
                index += 1
            case "\"":
                let start = line
                var value = String.UnicodeScalarView()
                index += 1
                while index < characters.count, characters[index] != "\"" {
                    if characters[index] == "\n" { line += 1 }
                    value.append(characters[index])
                    index += 1
                }
                guard index < characters.count else {
                    throw SimpleConfigError(line: start, message: "a quoted value is never closed")
                }
                guard !value.isEmpty else {
                    throw SimpleConfigError(line: start, message: "empty value \"\": fence_virtd cannot read it")
                }
                tokens.append((.value(String(value)), start))
                index += 1
            default:
                var name = String.UnicodeScalarView()
                while index < characters.count, !" \t\r\n{};=\"".unicodeScalars.contains(characters[index]) {
                    name.append(characters[index])
                    index += 1
                }
                tokens.append((.name(String(name)), line))
            }
        }
        return tokens
    }
}

private struct Parser {
    let tokens: [(Token, Int)]
    var position = 0

    init(tokens: [(Token, Int)]) { self.tokens = tokens }

    mutating func parseFile() throws(SimpleConfigError) -> SimpleConfig.Block {
        var root = SimpleConfig.Block(name: "", value: nil, line: 1)
        try parseItems(into: &root, closedBy: nil)
        guard !root.assignments.isEmpty || !root.blocks.isEmpty else {
            throw SimpleConfigError(line: 1, message: "the file has no settings")
        }
        return root
    }

    private var lastLine: Int { tokens.last?.1 ?? 1 }

    private mutating func next(expecting what: String) throws(SimpleConfigError) -> (Token, Int) {
        guard position < tokens.count else {
            throw SimpleConfigError(line: lastLine, message: "the file ends where \(what) was expected")
        }
        defer { position += 1 }
        return tokens[position]
    }

    /// Items until `}` (of the block opened at `closedBy`) or the end of the file (top level).
    private mutating func parseItems(
        into block: inout SimpleConfig.Block,
        closedBy opening: Int?
    ) throws(SimpleConfigError) {
        while true {
            guard position < tokens.count else {
                if let opening {
                    throw SimpleConfigError(line: opening, message: "'{' of '\(block.name)' is never closed")
                }
                return
            }
            let (token, line) = tokens[position]
            position += 1
            switch token {
            case .closeBrace:
                guard opening != nil else { throw SimpleConfigError(line: line, message: "'}' without a matching '{'") }
                return
            case .name(let name):
                try parseItem(named: name, at: line, into: &block)
            default:
                throw SimpleConfigError(line: line, message: "expected a name, found \(token.shown)")
            }
        }
    }

    private mutating func parseItem(
        named name: String,
        at line: Int,
        into block: inout SimpleConfig.Block
    ) throws(SimpleConfigError) {
        let (token, tokenLine) = try next(expecting: "'=' or '{' after '\(name)'")
        switch token {
        case .openBrace:
            var child = SimpleConfig.Block(name: name, value: nil, line: line)
            try parseItems(into: &child, closedBy: tokenLine)
            block.blocks.append(child)
        case .equals:
            let (valueToken, valueLine) = try next(expecting: "a quoted value after '\(name) ='")
            guard case .value(let value) = valueToken else {
                throw SimpleConfigError(
                    line: valueLine,
                    message: "'\(name) =' must be followed by a value in double quotes, found \(valueToken.shown)"
                )
            }
            let (end, endLine) = try next(expecting: "';' after '\(name) = \"\(value)\"'")
            switch end {
            case .semicolon:
                block.assignments.append(SimpleConfig.Assignment(name: name, value: value, line: line))
            case .openBrace:
                var child = SimpleConfig.Block(name: name, value: value, line: line)
                try parseItems(into: &child, closedBy: endLine)
                block.blocks.append(child)
            default:
                throw SimpleConfigError(
                    line: endLine,
                    message: "expected ';' after '\(name) = \"\(value)\"', found \(end.shown)"
                )
            }
        default:
            throw SimpleConfigError(
                line: tokenLine,
                message: "expected '=' or '{' after '\(name)', found \(token.shown)"
            )
        }
    }
}
