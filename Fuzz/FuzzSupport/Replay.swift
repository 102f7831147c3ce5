import Foundation

/// Runs `body` on every file under the given paths (files or directories); prints how many it ran.
public func replayCorpus(_ paths: ArraySlice<String>, _ body: ([UInt8]) -> Void) {
    var count = 0
    for path in paths {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
            exit(2)
        }
        let files =
            isDirectory.boolValue
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            body([UInt8](data))
            count += 1
        }
    }
    print("replayed \(count) inputs")
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// The input handler libFuzzer calls; set once by `runFuzzer` before the driver starts.
nonisolated(unsafe) private var fuzzBody: (([UInt8]) -> Void)?

/// Hands control to libFuzzer (its flags in `argv`), feeding each input to `body`. SwiftPM names an
/// executable's entry point `<module>_main`, so each fuzz target exports that and calls this.
public func runFuzzer(
    argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, _ body: @escaping ([UInt8]) -> Void
) -> Int32 {
    fuzzBody = body
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return llvmFuzzerRunDriver(&count, &arguments) { data, size in
        fuzzBody?(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
        return 0
    }
}
#endif
