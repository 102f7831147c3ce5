internal import CLibvirt

/// One domain handle; owns the `virDomainPtr` (freed in `deinit`) and keeps its connection alive.
///
/// `@unchecked Sendable`: libvirt domain handles are thread-safe, and this class has no mutable state.
final class LibvirtDomain: @unchecked Sendable {
    private let handle: virDomainPtr
    private let connection: LibvirtConnection

    init(handle: virDomainPtr, connection: LibvirtConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit {
        virDomainFree(handle)
    }

    /// Calls `virDomainGetName`.
    func name() throws(LibvirtError) -> String {
        guard let name = virDomainGetName(handle) else { throw LibvirtError.last(operation: "virDomainGetName") }
        return String(cString: name)
    }

    /// The canonical lower-case UUID text. Calls `virDomainGetUUIDString`.
    func uuid() throws(LibvirtError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(handle, &buffer) == 0 else {
            throw LibvirtError.last(operation: "virDomainGetUUIDString")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Calls `virDomainGetState`.
    func state() throws(LibvirtError) -> DomainState {
        var state: Int32 = 0
        var reason: Int32 = 0
        guard virDomainGetState(handle, &state, &reason, 0) == 0 else {
            throw LibvirtError.last(operation: "virDomainGetState")
        }
        return DomainState(libvirtState: state)
    }

    /// True for a defined (persistent) domain, false for a transient one. Calls `virDomainIsPersistent`.
    func isPersistent() throws(LibvirtError) -> Bool {
        let persistent = virDomainIsPersistent(handle)
        guard persistent >= 0 else { throw LibvirtError.last(operation: "virDomainIsPersistent") }
        return persistent == 1
    }

    /// Forces the domain off at once. Calls `virDomainDestroy`.
    func destroy() throws(LibvirtError) {
        guard virDomainDestroy(handle) == 0 else { throw LibvirtError.last(operation: "virDomainDestroy") }
    }

    /// Asks the guest to power off. Calls `virDomainShutdown`.
    func shutdown() throws(LibvirtError) {
        guard virDomainShutdown(handle) == 0 else { throw LibvirtError.last(operation: "virDomainShutdown") }
    }

    /// Asks the guest to restart. Calls `virDomainReboot` with the hypervisor's default method.
    func reboot() throws(LibvirtError) {
        guard virDomainReboot(handle, 0) == 0 else { throw LibvirtError.last(operation: "virDomainReboot") }
    }

    /// Injects a non-maskable interrupt. Calls `virDomainInjectNMI`.
    func injectNMI() throws(LibvirtError) {
        guard virDomainInjectNMI(handle, 0) == 0 else { throw LibvirtError.last(operation: "virDomainInjectNMI") }
    }

    /// Starts a defined domain from its persistent definition. Calls `virDomainCreate`.
    func create() throws(LibvirtError) {
        guard virDomainCreate(handle) == 0 else { throw LibvirtError.last(operation: "virDomainCreate") }
    }

    /// The live XML description, secrets included. Calls `virDomainGetXMLDesc` with `VIR_DOMAIN_XML_SECURE`.
    func xmlDescription() throws(LibvirtError) -> String {
        guard let xml = virDomainGetXMLDesc(handle, UInt32(VIR_DOMAIN_XML_SECURE.rawValue)) else {
            throw LibvirtError.last(operation: "virDomainGetXMLDesc")
        }
        defer { free(xml) }
        return String(cString: xml)
    }

    /// The maximum memory in KiB. Calls `virDomainGetMaxMemory`.
    func maxMemoryKiB() throws(LibvirtError) -> UInt {
        let memory = virDomainGetMaxMemory(handle)
        guard memory > 0 else { throw LibvirtError.last(operation: "virDomainGetMaxMemory") }
        return memory
    }
}
