import Foundation

/// What a program printed and returned.
public struct ProgramResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a program to completion off the cooperative pool, in `directory` if given.
public func runProgram(
    _ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil,
    standardInput: String? = nil
) async throws -> ProgramResult {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            do {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = arguments
                if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
                if let environment { process.environment = environment }
                let output = Pipe()
                let errors = Pipe()
                process.standardOutput = output
                process.standardError = errors
                let input = Pipe()
                process.standardInput = standardInput == nil ? FileHandle.nullDevice : input
                try process.run()
                if let standardInput {
                    input.fileHandleForWriting.write(Data(standardInput.utf8))
                    try? input.fileHandleForWriting.close()
                }
                let errorData = Thread.detachedRead(errors.fileHandleForReading)
                let outputData = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(
                    returning: ProgramResult(
                        status: process.terminationStatus, stdout: String(decoding: outputData, as: UTF8.self),
                        stderr: String(decoding: errorData(), as: UTF8.self)))
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}

extension Thread {
    /// Reads a pipe to its end on another thread (so two pipes never deadlock); call the result to get the data.
    fileprivate static func detachedRead(_ handle: FileHandle) -> () -> Data {
        let box = DataBox()
        let done = DispatchSemaphore(value: 0)
        Thread {
            box.data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
        return {
            done.wait()
            return box.data
        }
    }
}

private final class DataBox: @unchecked Sendable {
    var data = Data()
}
