import Foundation
import TestSupport
import Testing

@testable import FenceCore

@Suite("A domain's UUID text, written here instead of by libvirt's snprintf")
struct UUIDTextTests {
    @Test("every byte value in every position: lower-case hex in groups of 8-4-4-4-12")
    func everyByte() {
        for position in 0..<16 {
            for value in 0...255 {
                var bytes = [UInt8](repeating: 0, count: 16)
                bytes[position] = UInt8(value)
                let hex = bytes.map { String(format: "%02x", $0) }
                let expected = [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]]
                    .map { $0.joined() }.joined(separator: "-")
                #expect(LibvirtDomain.uuidText(bytes) == expected)
            }
        }
    }

    @Test("the test driver's domain: the text libvirt itself writes for it (virsh, test:///default)")
    func asLibvirtWritesIt() throws {
        let hypervisor = LibvirtHypervisor(uri: "test:///default", logger: ServiceHarness.logger)
        #expect(try hypervisor.domain("test").uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f")
    }
}
