import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

extension ParsableCommand {
    /// Runs `body`, turning the library's errors into one line on stderr and exit status 1, and
    /// a usage error found while running into this command's usage (not the root's), status 1.
    func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as CNXError {
            FileHandle.standardError.write(Data("error: \(e.escapingControlCharacters.message)\n".utf8))
            throw ExitCode(1)
        } catch let e as ValidationError {
            let name = Self.configuration.commandName ?? String(describing: Self.self).lowercased()
            let usage = ConvnextConvert.usageString(for: Self.self)
            FileHandle.standardError.write(
                Data("Error: \(e.message)\nUsage: \(usage)\n  See 'convnext-convert \(name) --help' for more information.\n".utf8))
            throw ExitCode(1)
        }
    }
}

func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

/// One line on stderr and exit status 1, before any command runs.
func refuse(_ text: String) -> Never {
    FileHandle.standardError.write(Data("error: \(text)\n".utf8))
    exit(1)
}

struct ConvnextConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convnext-convert",
        abstract: "Convert, quantize, inspect, run, validate and benchmark ConvNeXt models exported from PyTorch.",
        discussion: """
            Reads ONNX files (with the external-data file torch writes beside them), PyTorch \
            checkpoints (.safetensors, .pth/.pt/.bin, a timm hub or transformers folder with its \
            config.json) and .cnx files; writes .cnx files.

              convnext-convert model.onnx model.cnx      (convert is the default command)
              convnext-convert quantize --int8 m.onnx m.int8.cnx --calibration calib.npy
              convnext-convert inspect model.cnx
              convnext-convert run model.cnx photo.jpg
              convnext-convert run model.cnx --input x.npy --output logits.npy
              convnext-convert validate m.cnx --reference m.onnx --data images/
              convnext-convert bench model.cnx --threads 2

            A command never writes over a file it reads; errors are one line on stderr with exit \
            status 1 (a usage error also shows the command's usage). Shell completion: \
            convnext-convert --generate-completion-script bash|zsh|fish.
            """,
        version: "convnext-convert \(converterVersion)",
        subcommands: [Convert.self, Quantize.self, Inspect.self, Run.self, ValidateGroup.self, Bench.self],
        defaultSubcommand: Convert.self
    )

    /// The subcommand names, for "did you mean".
    static var commandNames: [String] {
        configuration.subcommands.compactMap { $0.configuration.commandName ?? String(describing: $0).lowercased() }
    }
}

/// Optimal string alignment distance (edits, and swaps of neighbours, count 1).
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty || y.isEmpty { return max(x.count, y.count) }
    var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
    for i in 0...x.count { d[i][0] = i }
    for j in 0...y.count { d[0][j] = j }
    for i in 1...x.count {
        for j in 1...y.count {
            let cost = x[i - 1] == y[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
        }
    }
    return d[x.count][y.count]
}

/// Before parsing: a first argument that is not a command, not an option and not a file, but
/// close to a command's name, is a typo (`inpsect`, `quantise`), not a model to convert.
func checkCommandName(_ arguments: [String]) {
    guard let first = arguments.first, !first.hasPrefix("-"), !ConvnextConvert.commandNames.contains(first),
        !FileManager.default.fileExists(atPath: first)
    else { return }
    let scored = ConvnextConvert.commandNames.map { ($0, editDistance(first.lowercased(), $0)) }.min { $0.1 < $1.1 }
    if let (name, distance) = scored, distance <= max(1, min(2, name.count / 3)) {
        refuse("'\(first)' is not a command or a file; did you mean '\(name)'?")
    }
}

/// `CNX_ISA` chooses the kernels; a value the runtime does not know is refused rather than
/// silently ignored.
func checkISAVariable() {
    guard let value = ProcessInfo.processInfo.environment["CNX_ISA"], !value.isEmpty else { return }
    guard Benchmark.isKernelLevel(value) else {
        refuse("CNX_ISA=\(value): unknown kernel set; use one of \(Benchmark.kernelLevels) (or unset it for the best the CPU has)")
    }
}

checkISAVariable()
checkCommandName(Array(CommandLine.arguments.dropFirst()))
// As ArgumentParser's main(), except that a usage error (a bad option or value, which it would
// end with EX_USAGE, 64) exits with status 1 like every other bad input; help, --version and the
// commands' own exit codes (validate's 2) are unchanged.
do {
    var command = try ConvnextConvert.parseAsRoot()
    try command.run()
} catch {
    if ConvnextConvert.exitCode(for: error) == .validationFailure {
        FileHandle.standardError.write(Data((ConvnextConvert.fullMessage(for: error) + "\n").utf8))
        exit(1)
    }
    ConvnextConvert.exit(withError: error)
}
