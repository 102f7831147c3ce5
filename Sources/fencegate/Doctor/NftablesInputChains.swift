import FenceCore
import FoundationEssentials

/// The input chains of an `nft list ruleset` listing, read well enough for doctor's hints: which ones drop
/// by default, and whether their rules accept a port.
struct NftablesInputChains {
    struct Chain {
        let family: String
        let table: String
        let name: String
        let dropsByDefault: Bool
        let rules: [String]

        /// True if a rule accepts `transport` traffic to `port` (`udp dport 1229 accept`, or in a set).
        func accepts(_ transport: String, port: UInt16) -> Bool {
            rules.contains { rule in
                guard rule.contains("accept"), rule.contains("\(transport) dport") else { return false }
                let after = rule.components(separatedBy: "\(transport) dport").last ?? ""
                let words = after.split(whereSeparator: { " {},".contains($0) })
                return words.first == Substring(String(port))
                    || (after.hasPrefix(" {") && words.contains(Substring(String(port))))
            }
        }
    }

    private(set) var chains: [Chain] = []

    var dropping: [Chain] { chains.filter(\.dropsByDefault) }

    init(_ ruleset: String) {
        var family = ""
        var table = ""
        var name = ""
        var isInput = false
        var drops = false
        var rules: [String] = []
        var inChain = false
        for raw in ruleset.split(separator: "\n") {
            let line = String(raw.trimmingSpaces)
            let words = line.split(separator: " ").map(String.init)
            if words.first == "table", words.count >= 3 {
                family = words[1]
                table = words[2]
            } else if words.first == "chain", words.count >= 2 {
                name = words[1]
                inChain = true
                isInput = false
                drops = false
                rules = []
            } else if inChain, line.hasPrefix("type ") {
                isInput = line.contains("hook input")
                drops = line.contains("policy drop")
            } else if inChain, line == "}" {
                if isInput {
                    chains.append(Chain(family: family, table: table, name: name, dropsByDefault: drops, rules: rules))
                }
                inChain = false
            } else if inChain, !line.isEmpty {
                rules.append(line)
            }
        }
    }
}
