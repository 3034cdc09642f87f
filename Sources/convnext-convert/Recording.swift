import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXValidate
import Foundation

/// Preprocessing that `convert` and `quantize` record in the `.cnx`, so that `run`, `validate`
/// and calibration from images use it without the flags being repeated.
extension PreprocessOptions {
    /// The metadata entries these flags give, plus class names from a text file.
    func metadata(classNamesFile: String?) throws -> [String: MetadataValue] {
        var m: [String: MetadataValue] = [:]
        if let size { m[MetadataKey.inputSize] = .ints([Int64(size), Int64(size)]) }
        if let cropPct { m[MetadataKey.cropPct] = .float(Float(cropPct)) }
        if let interpolation { m[MetadataKey.interpolation] = .string(interpolation.lowercased()) }
        if let resize, let mode = Self.resizeMode(resize) { m[MetadataKey.resizeMode] = .string(mode.rawValue) }
        func three(_ v: [Float]) -> [Float] { v.count == 1 ? [v[0], v[0], v[0]] : v }
        if let mean { m[MetadataKey.mean] = .floats(three(try Self.triple(mean, "--mean"))) }
        if let std { m[MetadataKey.std] = .floats(three(try Self.triple(std, "--std"))) }
        if let classNamesFile {
            let names = try Classification.readNames(classNamesFile)
            guard !names.isEmpty else { throw CNXError("\(classNamesFile): no class names in it") }
            m[MetadataKey.classNames] = .strings(names)
        }
        return m
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
