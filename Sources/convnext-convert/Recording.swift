import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXValidate
import Foundation

/// Preprocessing that `convert` and `quantize` record in the `.cnx`, so that `run`, `validate`
/// and calibration from images use it without the flags being repeated.
struct RecordOptions: ParsableArguments {
    @Option(name: .long, help: "Record the image input size (square) in the .cnx.")
    var size: Int?

    @Option(name: .customLong("crop-pct"), help: "Record the crop fraction: images are resized to size / crop-pct, then centre-cropped.")
    var cropPct: Double?

    @Option(name: .long, help: "Record the resize filter: bilinear or bicubic.")
    var interpolation: String?

    @Option(name: .long, help: ArgumentHelp("Record the per-channel mean (of pixels scaled to 0...1).", valueName: "r,g,b"))
    var mean: String?

    @Option(name: .long, help: ArgumentHelp("Record the per-channel standard deviation.", valueName: "r,g,b"))
    var std: String?

    func validate() throws {
        if let size, size < 1 { throw ValidationError("--size must be positive") }
        if let cropPct, !(cropPct > 0 && cropPct <= 4) { throw ValidationError("--crop-pct must be in (0, 4]") }
        if let interpolation, Interpolation(rawValue: interpolation.lowercased()) == nil {
            throw ValidationError("--interpolation must be bilinear or bicubic, not '\(interpolation)'")
        }
        if let mean { _ = try PreprocessOptions.triple(mean, "--mean") }
        if let std, try PreprocessOptions.triple(std, "--std").contains(0) { throw ValidationError("--std values must be non-zero") }
    }

    /// The metadata entries these flags give, plus class names from a text file.
    func metadata(classNamesFile: String?) throws -> [String: MetadataValue] {
        var m: [String: MetadataValue] = [:]
        if let size { m[MetadataKey.inputSize] = .ints([Int64(size), Int64(size)]) }
        if let cropPct { m[MetadataKey.cropPct] = .float(Float(cropPct)) }
        if let interpolation { m[MetadataKey.interpolation] = .string(interpolation.lowercased()) }
        func three(_ v: [Float]) -> [Float] { v.count == 1 ? [v[0], v[0], v[0]] : v }
        if let mean { m[MetadataKey.mean] = .floats(three(try PreprocessOptions.triple(mean, "--mean"))) }
        if let std { m[MetadataKey.std] = .floats(three(try PreprocessOptions.triple(std, "--std"))) }
        if let classNamesFile { m[MetadataKey.classNames] = .strings(try Self.classNames(classNamesFile)) }
        return m
    }

    /// Class names, one a line (a trailing empty line ignored).
    static func classNames(_ path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { throw CNXError("\(path): no such file") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CNXError("\(path): not a UTF-8 text file of class names, one a line")
        }
        var names = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
        }
        if names.last == "" { names.removeLast() }
        guard !names.isEmpty else { throw CNXError("\(path): no class names in it") }
        return names
    }
}

extension Int8Options {
    /// `--labels` means class names (a text file, recorded in the `.cnx`) unless it is a `.npy`,
    /// which holds the class ids of the `--validation` samples.
    var classNamesFile: String? {
        guard let labels, !labels.lowercased().hasSuffix(".npy") else { return nil }
        return labels
    }

    var validationLabels: String? {
        guard let labels, labels.lowercased().hasSuffix(".npy") else { return nil }
        return labels
    }

    /// Every file these options make the command read.
    var reads: [ReadFile] {
        var files: [ReadFile] = []
        if let calibration { files += OutputGuard.dataFiles(calibration, role: "the calibration data") }
        if let validation { files.append(ReadFile(validation, role: "the validation data")) }
        if let labels { files.append(ReadFile(labels, role: "the labels file")) }
        return files
    }
}

/// A one-line "what is happening" on stderr while a conversion runs, when stderr is a terminal
/// (nothing when it is piped or redirected); cleared before the report is printed.
final class StageLine: @unchecked Sendable {
    let enabled = isatty(2) != 0
    private var shown = false

    var callback: ((String) -> Void)? {
        guard enabled else { return nil }
        return { [self] what in
            FileHandle.standardError.write(Data("\r\u{1B}[K\(what)...".utf8))
            shown = true
        }
    }

    func clear() {
        if shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        shown = false
    }
}
