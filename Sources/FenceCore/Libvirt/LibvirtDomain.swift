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

    /// The canonical lower-case UUID text (8-4-4-4-12 hex digits, as `virDomainGetUUIDString` writes it).
    /// Calls `virDomainGetUUID` and writes the text here: libvirt formats it with `snprintf`, about 4 % of a
    /// read's CPU in the profile of note 15 (bench/profile-notes.md).
    func uuid() throws(LibvirtError) -> String {
        var bytes = [UInt8](repeating: 0, count: Int(VIR_UUID_BUFLEN))
        guard virDomainGetUUID(handle, &bytes) == 0 else {
            throw LibvirtError.last(operation: "virDomainGetUUID")
        }
        return Self.uuidText(bytes)
    }

    /// `bytes` (16) as lower-case hex digits in groups of 8, 4, 4, 4 and 12, joined by dashes.
    static func uuidText(_ bytes: [UInt8]) -> String {
        func digit(_ nibble: UInt8) -> UInt8 {
            nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
        }
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digit(byte >> 4))
            text.append(digit(byte & 0x0f))
        }
        return String(decoding: text, as: UTF8.self)
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

    /// Where libvirt learns a guest's addresses (`virDomainInterfaceAddressesSource`).
    enum AddressSource: UInt32 {
        /// The DHCP leases of libvirt's own networks (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE`).
        case lease = 0
        /// The QEMU guest agent (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT`).
        case agent = 1
        /// The host's ARP table (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP`).
        case arp = 2
    }

    /// The IP addresses of the domain's interfaces as `source` knows them (numeric text, as `inet_ntop`
    /// writes them). Calls `virDomainInterfaceAddresses` and `virDomainInterfaceFree`.
    func interfaceAddresses(from source: AddressSource) throws(LibvirtError) -> [String] {
        var interfaces: UnsafeMutablePointer<virDomainInterfacePtr?>?
        let count = virDomainInterfaceAddresses(handle, &interfaces, source.rawValue, 0)
        guard count >= 0 else { throw LibvirtError.last(operation: "virDomainInterfaceAddresses") }
        guard let interfaces else { return [] }
        defer {
            for index in 0..<Int(count) { interfaces[index].map(virDomainInterfaceFree) }
            free(interfaces)
        }
        var addresses: [String] = []
        for index in 0..<Int(count) {
            guard let interface = interfaces[index]?.pointee, let list = interface.addrs else { continue }
            for entry in 0..<Int(interface.naddrs) {
                if let text = list[entry].addr { addresses.append(String(cString: text)) }
            }
        }
        return addresses
    }

    /// The maximum memory in KiB. Calls `virDomainGetMaxMemory`.
    func maxMemoryKiB() throws(LibvirtError) -> UInt {
        let memory = virDomainGetMaxMemory(handle)
        guard memory > 0 else { throw LibvirtError.last(operation: "virDomainGetMaxMemory") }
        return memory
    }
}
