import Foundation
import Testing

@testable import FenceCore

@Suite("A domain's UUID text, written here instead of by libvirt's snprintf")
struct UUIDTextTests {
    @Test("every byte value, in every position: lower-case hex in groups of 8-4-4-4-12, as libvirt writes it")
    func everyByte() {
        for start in stride(from: 0, to: 256, by: 16) {
            let bytes = (0..<16).map { UInt8((start + $0 * 17) % 256) }
            let hex = bytes.map { String(format: "%02x", $0) }
            let expected = [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]]
                .map { $0.joined() }.joined(separator: "-")
            #expect(LibvirtDomain.uuidText(bytes) == expected)
        }
        #expect(
            LibvirtDomain.uuidText([
                0x66, 0x95, 0xeb, 0x01, 0xf6, 0xa4, 0x83, 0x04, 0x79, 0xaa, 0x97, 0xf2, 0x50, 0x2e, 0x19, 0x3f,
            ])
                == "6695eb01-f6a4-8304-79aa-97f2502e193f"
        )
    }
}
