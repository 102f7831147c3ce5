/// A front end's own thread that may wait briefly in the hypervisor, to answer a read where it arrived instead
/// of handing it to the hypervisor's pool and back: libmicrohttpd's thread running a GET's handler, say. The
/// front end keeps its own bound (how many of its threads may wait so at once) in `run`.
public protocol InPlaceReads: Sendable {
    /// Runs `body` on the calling thread and returns its value if that thread may wait in it now; nil, without
    /// running it, if it may not (not the front end's thread, or its bound reached).
    func run<T>(_ body: () -> T) -> T?
}
