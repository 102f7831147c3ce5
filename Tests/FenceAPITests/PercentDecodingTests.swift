import Foundation
import Testing

@testable import FenceAPI

@Suite("HTTP: percent-decoding without Foundation's NSString")
struct PercentDecodingTests {
    @Test(
        "percentDecoded agrees with Foundation's removingPercentEncoding",
        arguments: [
            "", "plain", "a%2Fb", "%41%42c", "%e2%82%ac", "%E2%82%AC", "a+b", "%", "%2", "%ZZ", "%2G", "%C3%28",
            "%00", "é%20", "%%41", "100%", "%ff", "%F0%9F%98%80x",
        ]
    )
    func agreesWithFoundation(text: String) {
        #expect(text.percentDecoded == text.removingPercentEncoding)
        #expect(text[...].percentDecoded == text.removingPercentEncoding)
    }

}
