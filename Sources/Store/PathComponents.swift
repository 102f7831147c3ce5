extension String {
    /// This path without its last component, as `NSString.deletingLastPathComponent` reads it: `/a/b` → `/a`,
    /// `/a` → `/`, `a` → the empty string, `/` → `/`; trailing and repeated slashes do not count as components.
    /// Cut on the bytes of `/`, never on characters: a `/` followed by a combining mark is still a separator.
    package var parentPath: String {
        let slash = UInt8(ascii: "/")
        var path = Array(utf8)[...]
        while path.count > 1, path.last == slash { path.removeLast() }
        guard let index = path.lastIndex(of: slash) else { return "" }
        var parent = path[..<index]
        while parent.last == slash { parent.removeLast() }
        return parent.isEmpty ? "/" : String(decoding: parent, as: UTF8.self)
    }
}
