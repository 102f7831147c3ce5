extension String {
    /// This path without its last component, as `NSString.deletingLastPathComponent` reads it: `/a/b` → `/a`,
    /// `/a` → `/`, `a` → the empty string, `/` → `/`; trailing and repeated slashes do not count as components.
    package var parentPath: String {
        var path = Substring(self)
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        guard let slash = path.lastIndex(of: "/") else { return "" }
        var parent = path[..<slash]
        while parent.hasSuffix("/") { parent.removeLast() }
        return parent.isEmpty ? "/" : String(parent)
    }
}
