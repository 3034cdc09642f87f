import ArgumentParser
import CNXFormat
import CNXGraph
import CNXValidate
import Foundation

/// The preprocessing `run` and `validate` use for images, and where each setting came from: a
/// flag, the model file (`.cnx` metadata, a timm `config.json`), the size the model's input
/// fixes, or ImageNet's default.
struct ResolvedPreprocessing {
    var preprocessing: Preprocessing
    /// Setting ("size", "crop_pct", "interpolation", "mean", "std") to its origin.
    var sources: [(setting: String, source: String)]

    static let defaultSource = "ImageNet's defaults"
    static let settings = ["size", "crop_pct", "interpolation", "mean", "std"]

    /// The settings that fell back to ImageNet's defaults.
    var defaulted: [String] { sources.filter { $0.source == Self.defaultSource }.map(\.setting) }

    /// `size: flag --size; crop_pct, interpolation: m.cnx metadata; mean, std: ImageNet default`.
    var origin: String {
        var groups: [(source: String, settings: [String])] = []
        for (setting, source) in sources {
            if let i = groups.firstIndex(where: { $0.source == source }) {
                groups[i].settings.append(setting)
            } else {
                groups.append((source, [setting]))
            }
        }
        return groups.map { "\($0.settings.joined(separator: ", ")) from \($0.source)" }.joined(separator: "; ")
    }

    /// The line `run` and `validate` print.
    var line: String { "preprocessing: \(preprocessing.summary) (\(origin))" }

    /// The warning printed when some settings are ImageNet's defaults because nothing said otherwise.
    func warning(models: [String]) -> String? {
        let d = defaulted
        guard !d.isEmpty else { return nil }
        return "warning: \(models.joined(separator: " and ")) record\(models.count == 1 ? "s" : "") no \(d.joined(separator: ", ")); "
            + "using ImageNet's defaults. If the model was trained otherwise, give --\(d[0].replacingOccurrences(of: "_", with: "-")) etc., "
            + "or record them once with convert --mean ... --std ..."
    }

    var json: JSON {
        let p = preprocessing
        return .object([
            ("height", .int(p.height)), ("width", .int(p.width)), ("crop_pct", .number(p.cropPct)),
            ("interpolation", .string(p.interpolation.rawValue)),
            ("mean", .array(p.mean.map { .number(Double(String($0)) ?? Double($0)) })),
            ("std", .array(p.std.map { .number(Double(String($0)) ?? Double($0)) })),
            ("source", .object(sources.map { ($0.setting, .string($0.source)) })),
        ])
    }
}

extension PreprocessOptions {
    /// `resolve`, with where each setting came from.
    func resolveWithSources(_ models: [Predictor]) throws -> ResolvedPreprocessing {
        let p = try resolve(models)
        var source: [String: String] = [:]
        // The last model of the list is applied first (the first one wins), as `resolve` does.
        for m in models.reversed() {
            let name = URL(fileURLWithPath: m.path).lastPathComponent
            let origin = m.path.lowercased().hasSuffix(".cnx") ? "\(name) metadata" : "\(name)'s config.json"
            let keys: [(String, String)] = [
                (MetadataKey.inputSize, "size"), (MetadataKey.cropPct, "crop_pct"),
                (MetadataKey.interpolation, "interpolation"), (MetadataKey.mean, "mean"), (MetadataKey.std, "std"),
                (MetadataKey.resizeMode, "resize"),
            ]
            for (key, setting) in keys where m.metadata[key] != nil { source[setting] = origin }
            let config = URL(fileURLWithPath: m.path).deletingLastPathComponent().appendingPathComponent("config.json").path
            if let data = FileManager.default.contents(atPath: config),
                let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            {
                let cfg = root["pretrained_cfg"] as? [String: Any] ?? root
                for (key, setting) in [
                    ("input_size", "size"), ("crop_pct", "crop_pct"), ("interpolation", "interpolation"), ("mean", "mean"), ("std", "std"),
                ]
                where cfg[key] != nil {
                    source[setting] = "config.json beside \(name)"
                }
            }
            if m.fixedSize != nil { source["size"] = "\(name)'s input shape" }
        }
        if size != nil { source["size"] = "--size" }
        if cropPct != nil { source["crop_pct"] = "--crop-pct" }
        if interpolation != nil { source["interpolation"] = "--interpolation" }
        if resize != nil { source["resize"] = "--resize" }
        if mean != nil { source["mean"] = "--mean" }
        if std != nil { source["std"] = "--std" }
        return ResolvedPreprocessing(
            preprocessing: p,
            sources: ResolvedPreprocessing.settings.map { ($0, source[$0] ?? ResolvedPreprocessing.defaultSource) })
    }

    /// Whether any of these flags was given.
    var given: Bool { size != nil || cropPct != nil || interpolation != nil || resize != nil || mean != nil || std != nil }
}
