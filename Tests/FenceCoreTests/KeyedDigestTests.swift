import FenceCore
import Testing

@Suite("Keyed digests: the key hashed once")
struct KeyedDigestTests {
    @Test(
        "H(key ‖ message) from the prepared key equals hashing both, for every algorithm and key length",
        arguments: [0, 1, 32, 63, 64, 65, 4096]
    )
    func sameDigest(keyLength: Int) {
        let key = (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let keyed = KeyedDigest(key: key)
        #expect(keyed.keyIsEmpty == key.isEmpty)
        for algorithm in DigestAlgorithm.allCases {
            for message in [[], [0x41], [UInt8](repeating: 0x5A, count: 176), [UInt8](repeating: 1, count: 1000)] {
                #expect(keyed.digest(algorithm, message) == algorithm.digest(key, message), "\(algorithm)")
            }
        }
    }

    @Test("one prepared key digests from many threads at once")
    func concurrent() async {
        let key = [UInt8](repeating: 0xA5, count: 4096)
        let keyed = KeyedDigest(key: key)
        let expected = DigestAlgorithm.allCases.map { $0.digest(key, [1, 2, 3]) }
        let wrong = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var wrong = 0
                    for round in 0..<500 {
                        let algorithm = DigestAlgorithm.allCases[round % 3]
                        if keyed.digest(algorithm, [1, 2, 3]) != expected[round % 3] { wrong += 1 }
                    }
                    return wrong
                }
            }
            return await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }
}
