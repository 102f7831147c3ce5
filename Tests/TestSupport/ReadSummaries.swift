public import Store

/// Of `rows`, how many reads have a row of their own and how many are counted in summary rows
/// (`reads_not_recorded`, whose message starts with the count).
public func readsAccounted(in rows: [AuditRecord]) -> (individual: Int, summarized: Int) {
    let summarized = rows.filter { $0.errorCode == "reads_not_recorded" }.compactMap { row in
        row.message?.split(separator: " ").first.flatMap { Int($0) }
    }
    return (rows.filter { $0.errorCode == nil }.count, summarized.reduce(0, +))
}
