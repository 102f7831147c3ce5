#if FUZZING
import Foundation

@_silgen_name("LLVMFuzzerRunDriver")
private func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// How a fuzz target looks for memory leaks (LeakSanitizer comes with AddressSanitizer).
public enum LeakDetection: Sendable {
    /// libFuzzer's own check: an input that finds new coverage and allocates more than it frees is run
    /// again, then followed by a LeakSanitizer pass; a leak is reported with that input. Right for a target
    /// whose work all runs on libFuzzer's thread.
    case afterNewInputs
    /// For a target whose work runs on other threads too (tasks, timers, a server): there, allocation
    /// counts per input are noise, so libFuzzer would run its pass (tens of milliseconds on a large heap)
    /// after nearly every new input, until it gives up after 1000. Instead libFuzzer's check is off
    /// (`-detect_leaks=0`, which a flag on the command line overrides) and a LeakSanitizer pass over the
    /// whole process follows the first input after each `interval`. On a leak, the inputs run since the last
    /// clean pass are written to `<artifact_prefix>leak-candidates-<pid>/` before the process stops: replay
    /// them with `-detect_leaks=1 -runs=0 DIRECTORY` to find the one that leaks.
    case periodic(interval: Duration)
}

/// The input handler libFuzzer calls; set once by `runFuzzer` before the driver starts.
nonisolated(unsafe) private var fuzzBody: (([UInt8]) -> Void)?
/// Set once by `runFuzzer` for `.periodic`; then used on libFuzzer's thread only.
nonisolated(unsafe) private var periodicLeakCheck: PeriodicLeakCheck?

/// Hands control to libFuzzer (its flags in `argv`), feeding each input to `body`. SwiftPM names an
/// executable's entry point `<module>_main`, so each fuzz target exports that and calls this.
public func runFuzzer(
    argc: Int32,
    argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
    leakDetection: LeakDetection = .afterNewInputs,
    _ body: @escaping ([UInt8]) -> Void
) -> Int32 {
    var arguments = (0..<Int(argc)).map { argv[$0] }
    if case .periodic(let interval) = leakDetection {
        // First after the program name, so that a -detect_leaks flag given on the command line wins.
        arguments.insert(strdup("-detect_leaks=0"), at: min(1, arguments.count))
        let prefix = arguments.compactMap { $0.map { String(cString: $0) } }.last { $0.hasPrefix("-artifact_prefix=") }
        periodicLeakCheck = PeriodicLeakCheck(
            interval: interval,
            artifactPrefix: prefix.map { String($0.dropFirst("-artifact_prefix=".count)) } ?? ""
        )
    }
    fuzzBody = body
    var count = Int32(arguments.count)
    arguments.append(nil)
    return arguments.withUnsafeMutableBufferPointer { buffer in
        var pointer = buffer.baseAddress
        return llvmFuzzerRunDriver(&count, &pointer) { data, size in
            let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
            fuzzBody?(input)
            periodicLeakCheck?.afterInput(input)
            return 0
        }
    }
}

/// LeakSanitizer passes over the whole process, at most one per interval, remembering the inputs run since
/// the last clean pass so that a leak can be traced to one of them.
private final class PeriodicLeakCheck {
    private typealias LeakCheck = @convention(c) () -> Int32

    private let interval: Duration
    private let artifactPrefix: String
    /// `__lsan_do_recoverable_leak_check`: nonzero if leaks were found (it prints them); nil without LeakSanitizer.
    private let leakCheck: LeakCheck?
    private var lastPass = ContinuousClock.now
    private var inputsSinceLastPass: [[UInt8]] = []

    init(interval: Duration, artifactPrefix: String) {
        self.interval = interval
        self.artifactPrefix = artifactPrefix
        leakCheck = dlsym(dlopen(nil, RTLD_NOW), "__lsan_do_recoverable_leak_check").map {
            unsafeBitCast($0, to: LeakCheck.self)
        }
    }

    func afterInput(_ input: [UInt8]) {
        guard let leakCheck else { return }
        inputsSinceLastPass.append(input)
        guard ContinuousClock.now - lastPass >= interval else { return }
        if leakCheck() != 0 { saveCandidatesAndStop() }
        inputsSinceLastPass.removeAll(keepingCapacity: true)
        lastPass = .now
    }

    private func saveCandidatesAndStop() -> Never {
        let directory = "\(artifactPrefix)leak-candidates-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (index, input) in inputsSinceLastPass.enumerated() {
            _ = FileManager.default.createFile(atPath: "\(directory)/input-\(index)", contents: Data(input))
        }
        fatalError(
            "LeakSanitizer found leaks (above) after one of the \(inputsSinceLastPass.count) inputs in \(directory); "
                + "find it with: \(CommandLine.arguments[0]) -detect_leaks=1 -runs=0 \(directory)"
        )
    }
}
#endif
