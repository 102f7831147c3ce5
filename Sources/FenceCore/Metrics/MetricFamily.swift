/// One Prometheus metric family as documented: its name, its `# HELP` text and, for a timer's histogram, its
/// buckets.
public struct MetricFamily: Sendable {
    /// The metric's name, which is also its swift-metrics label.
    public let name: String
    /// The `# HELP` line's text.
    public let help: String
    /// Upper bounds of a timer's histogram buckets (`+Inf` is implied); empty for other metrics.
    public let buckets: [Duration]

    public init(name: String, help: String, buckets: [Duration] = []) {
        self.name = name
        self.help = help
        self.buckets = buckets
    }
}
