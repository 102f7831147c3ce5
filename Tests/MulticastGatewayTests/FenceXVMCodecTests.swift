import FenceCore
import Foundation
import Testing

@testable import MulticastGateway

/// The vectors of ../shared/docs/fence-xvm-protocol.md §14.1: a captured `fence_xvm -o off -H test`.
enum CapturedVector {
    static let key = bytes("ded38a72208d548b13c7551f9e94e98655ec418fa5ba388d9d38be2a63ab3592")
    static let packet = bytes(
        "01020400746573740000000000000000" + String(repeating: "0", count: 96) + "000000007f000001"
            + String(repeating: "0", count: 48) + "cd04bb14ebb9b6afc147030002000000"
            + "3b6af9e2df5eae03eb6ebb86eff6bb7b62649d314da524976a4f9504bd35e648"
            + String(repeating: "0", count: 64)
    )
    static let challenge = bytes(
        "452b990f8cbbc87c9b9cee213a6c7e98339f208ad624be1ee97d77f304ed2232d4909fce28c9d773c5027a51126e5542f94bac7b623dc3c28bcff354c1f5ce28"
    )
    static let response =
        bytes("e124b6ee983d81be0f4c763c388a4283003334d8bcf2cfac9f6e3aa34c2c0e2f") + [UInt8](repeating: 0, count: 32)

    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return result
    }
}

@Suite("fence_xvm request codec")
struct FenceXVMCodecTests {
    @Test("the captured request parses field by field")
    func parsesCapturedRequest() throws {
        #expect(CapturedVector.packet.count == 176)
        let request = try FenceXVMRequest(bytes: CapturedVector.packet)
        #expect(request.operation == .off)
        #expect(request.hashType == HashType.sha256.rawValue)
        #expect(request.addressLength == 4)
        #expect(request.flags == 0)
        #expect(request.domain == "test")
        #expect(request.port == 1229)
        #expect(request.random == [0xbb, 0x14, 0xeb, 0xb9, 0xb6, 0xaf])
        #expect(request.sequenceNumber == 214_977)
        #expect(request.family == 2)
        #expect(request.callbackAddress == SocketAddress(ipv4: [127, 0, 0, 1], port: 1229))
        #expect(request.requesterIdentity == "127.0.0.1")
        #expect(request.bytes == CapturedVector.packet)
    }

    @Test("the captured signature verifies with the key, and fails with any change")
    func verifiesSignature() throws {
        let request = try FenceXVMRequest(bytes: CapturedVector.packet)
        #expect(request.isAuthentic(key: CapturedVector.key, minimumHash: .sha256))
        #expect(request.isAuthentic(key: CapturedVector.key, minimumHash: .sha1))
        #expect(!request.isAuthentic(key: CapturedVector.key, minimumHash: .sha512))  // weaker than required
        #expect(!request.isAuthentic(key: CapturedVector.key.dropLast() + [0], minimumHash: .sha256))
        #expect(!request.isAuthentic(key: [], minimumHash: .none))  // signed, but no key held
        // 60 and 67 are NUL padding after the name, 90 padding after the address: signed like the rest.
        for offset in [0, 4, 60, 67, 70, 90, 97, 100, 105, 108, 112, 150, 175] {
            var tampered = CapturedVector.packet
            tampered[offset] ^= 0x01
            let parsed = try FenceXVMRequest(bytes: tampered)
            #expect(!parsed.isAuthentic(key: CapturedVector.key, minimumHash: .sha256), "byte \(offset)")
        }
    }

    @Test("unsigned packets pass only when none is allowed; unknown hash types never pass")
    func unsignedAndUnknown() throws {
        let unsigned = try FenceXVMRequest(
            operation: .status,
            domain: "pcmk1",
            address: [198, 18, 0, 11],
            port: 1229,
            sequenceNumber: 1,
            family: 2
        ).signed(hashType: .none, key: [])
        #expect(unsigned.random == [0, 0, 0, 0, 0, 0])
        #expect(unsigned.isAuthentic(key: [], minimumHash: .none))
        #expect(unsigned.isAuthentic(key: CapturedVector.key, minimumHash: .none))
        #expect(!unsigned.isAuthentic(key: CapturedVector.key, minimumHash: .sha1))
        var unknown = try FenceXVMRequest(bytes: CapturedVector.packet)
        unknown.hashType = 4
        #expect(!unknown.isAuthentic(key: CapturedVector.key, minimumHash: .none))
    }

    @Test("signing as fence_xvm does round-trips for every algorithm", arguments: HashType.allCases)
    func signs(type: HashType) throws {
        let request = try FenceXVMRequest(
            operation: .reboot,
            domain: "pcmk2",
            address: [0xfd] + [UInt8](repeating: 0, count: 14) + [0x11],
            port: 1229,
            sequenceNumber: 999_999,
            family: 10
        ).signed(hashType: type, key: CapturedVector.key)
        let parsed = try FenceXVMRequest(bytes: request.bytes)
        #expect(parsed.isAuthentic(key: CapturedVector.key, minimumHash: type))
        #expect(parsed.requesterIdentity == "fd00::11")
        #expect(parsed.hash.suffix(64 - (type.algorithm?.length ?? 0)).allSatisfy { $0 == 0 })
    }

    @Test("anything but 176 bytes is refused", arguments: [0, 1, 175, 177, 512])
    func wrongSize(size: Int) {
        #expect(throws: FenceXVMRequest.ParseError.wrongSize(size)) {
            try FenceXVMRequest(bytes: [UInt8](repeating: 0, count: size))
        }
    }

    @Test("parsing keeps every byte: re-encoding any 176 bytes gives them back unchanged")
    func lossless() throws {
        for _ in 0..<200 {
            let bytes = (0..<FenceXVMRequest.size).map { _ in UInt8.random(in: 0...255) }
            #expect(try FenceXVMRequest(bytes: bytes).bytes == bytes)
        }
    }

    @Test("a name that is not UTF-8 verifies when signed (fence_virtd signs raw bytes too)")
    func nonUTF8Signed() throws {
        var request = try FenceXVMRequest(bytes: CapturedVector.packet)
        request.domainField = [0xFF, 0xFE, 0x41] + [UInt8](repeating: 0, count: 61)
        let signed = try request.signed(hashType: .sha256, key: CapturedVector.key)
        let received = try FenceXVMRequest(bytes: signed.bytes)
        #expect(received.isAuthentic(key: CapturedVector.key, minimumHash: .sha256))
    }

    @Test("a domain field without NUL, or with non-UTF-8 bytes, still parses (and names no real domain)")
    func oddDomains() throws {
        var bytes = CapturedVector.packet
        for index in 4..<68 { bytes[index] = 0x41 }
        #expect(try FenceXVMRequest(bytes: bytes).domain == String(repeating: "A", count: 64))
        bytes[4] = 0xFF
        #expect(try FenceXVMRequest(bytes: bytes).domain.hasPrefix("\u{FFFD}"))
    }

    @Test("the daemon's answer to the captured challenge matches the capture")
    func authVector() {
        #expect(
            HashType.sha256.paddedDigest(key: CapturedVector.key, CapturedVector.challenge) == CapturedVector.response
        )
    }
}

@Suite("fence_xvm host list")
struct HostListTests {
    @Test("0xFD, 130-byte records with raw libvirt states, a zero record, and a final byte")
    func encoding() {
        let domains = [
            DomainInfo(name: "test", uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f", state: .running, isPersistent: true),
            DomainInfo(name: "db", uuid: "11111111-1111-4111-8111-111111111111", state: .shutOff, isPersistent: true),
        ]
        let bytes = HostList.encode(domains)
        #expect(bytes.count == 1 + 3 * 130 + 1)
        #expect(bytes[0] == 0xFD)
        #expect(Array(bytes[1..<5]) == Array("test".utf8))
        #expect(bytes[5..<65].allSatisfy { $0 == 0 })
        #expect(Array(bytes[65..<101]) == Array("6695eb01-f6a4-8304-79aa-97f2502e193f".utf8))
        #expect(bytes[101..<129].allSatisfy { $0 == 0 })
        #expect(bytes[129] == 1)  // running
        #expect(bytes[130] == 0)  // pad
        #expect(bytes[131 + 128] == 5)  // shut off
        #expect(bytes[261..<391].allSatisfy { $0 == 0 })
        #expect(bytes[391] == 0)
        #expect(HostList.encode([]) == [0xFD] + [UInt8](repeating: 0, count: 130) + [0])
    }

    @Test("long names are cut to 63 bytes at a character boundary")
    func longNames() {
        let name = String(repeating: "é", count: 40)  // 80 bytes
        let bytes = HostList.encode([DomainInfo(name: name, uuid: "u", state: .running, isPersistent: true)])
        let field = Array(bytes[1..<65])
        let text = field.prefix { $0 != 0 }
        #expect(text.count == 62)
        #expect(String(validating: text, as: UTF8.self) == String(repeating: "é", count: 31))
    }
}
