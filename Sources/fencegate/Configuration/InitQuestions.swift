import FenceCore
import FoundationEssentials
import Glibc

/// Asks `config init`'s questions at a terminal, or takes their answers from options or defaults.
///
/// Each question shows its default in brackets, and Enter takes it. An answer that cannot be used is
/// explained and the question asked again. With `interactive` false (`--yes`), every question takes its
/// option's value or its default without asking.
struct InitQuestions {
    /// Why the questions cannot go on: a bad option, or the terminal's input ended.
    struct Stop: Error {
        let message: String
    }

    let interactive: Bool

    /// The answer to one question: `given` (an option's value, checked and never asked), else what is typed,
    /// else `defaultAnswer`. `explanation` is printed once, before the first prompt.
    func ask<Value>(
        _ prompt: String,
        explanation: String? = nil,
        default defaultAnswer: String?,
        given: String? = nil,
        option: String,
        _ check: (String) throws(AnswerError) -> Value
    ) throws(Stop) -> Value {
        if let given {
            do {
                return try check(given)
            } catch {
                throw Stop(message: "\(option) \(error.message)")
            }
        }
        guard interactive else {
            guard let defaultAnswer else { throw Stop(message: "\(option) is needed (there is no default)") }
            do {
                return try check(defaultAnswer)
            } catch {
                throw Stop(message: "\(prompt.lowercased()): \(error.message); give \(option)")
            }
        }
        if let explanation { print(explanation) }
        while true {
            // Unbuffered, so the prompt shows before the answer is read.
            fflush(nil)  // what print() buffered comes first
            write(defaultAnswer.map { "\(prompt) [\($0)]: " } ?? "\(prompt): ", to: STDOUT_FILENO)
            guard let line = readLine() else { throw Stop(message: "the input ended before \(option) was answered") }
            let answer = String(line.trimmingSpaces)
            guard let text = answer.isEmpty ? defaultAnswer : answer else {
                print("  an answer is needed (there is no default)")
                continue
            }
            do {
                return try check(text)
            } catch {
                print("  \(error.message)")
            }
        }
    }

    /// The Linux bridges of this host (its network namespace), `virbr0` (libvirt's default network) first.
    static func hostBridges(sysfs: String = "/sys/class/net") -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: sysfs)) ?? []
        let bridges = names.filter { FileManager.default.fileExists(atPath: "\(sysfs)/\($0)/bridge") }
        return bridges.sorted { left, right in
            (left == "virbr0") != (right == "virbr0") ? left == "virbr0" : left < right
        }
    }
}
