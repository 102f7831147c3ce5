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
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
            : [path]
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            body([UInt8](data))
            count += 1
        }
    }
    print("replayed \(count) inputs")
}
