import Testing

@testable import FenceAPI

@Suite("Redfish: the member names of a Reset body, as given (a name given twice is refused)")
struct JSONMemberNamesTests {
    @Test(
        "names unescaped and in order, repeats kept, values of every kind skipped",
        arguments: [
            (#"{}"#, []),
            (#" { "ResetType" : "On" } "#, ["ResetType"]),
            (#"{"ResetType":"On","ResetType":"ForceOff"}"#, ["ResetType", "ResetType"]),
            (#"{"Reset\u0054ype":"On","ResetType":"x"}"#, ["ResetType", "ResetType"]),
            (#"{"a\"b\\c\/d":1,"\ud83d\ude00":2}"#, [#"a"b\c/d"#, "😀"]),
            (#"{"lone \ud800":true}"#, ["lone \u{FFFD}"]),
            (
                #"{"Oem":{"ResetType":"x","n":[1,{"ResetType":2}]},"s":"}{][\"","ResetType":"On"}"#,
                ["Oem", "s", "ResetType"]
            ),
            (#"{"n":-1.5e3,"t":true,"f":false,"z":null,"a":[]}"#, ["n", "t", "f", "z", "a"]),
        ] as [(String, [String])]
    )
    func names(body: String, expected: [String]) {
        #expect(JSONMemberNames(Array(body.utf8)).names == expected)
    }

    @Test("not an object: no names", arguments: ["[]", "\"ResetType\"", "1", "", "{\"a\""])
    func notAnObject(body: String) {
        #expect(JSONMemberNames(Array(body.utf8)).names == nil)
    }
}
