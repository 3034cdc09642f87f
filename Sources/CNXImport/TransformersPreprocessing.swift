import CNXFormat
import CNXGraph
import Foundation

/// The preprocessing of a Hugging Face transformers ConvNeXt folder, from its
/// `preprocessor_config.json`, as `.cnx` metadata (Formats/CNX.md) that makes `run` and
/// `validate` transform images exactly as transformers' `ConvNextImageProcessor` does with its
/// PIL backend (`use_fast=False`):
///
/// - `do_resize` (default true), `size.shortest_edge` s (default 384; a bare integer `size`, as
///   older files write it, is the shortest edge), `crop_pct` (default 224 / 256), `resample`
///   (a PIL filter code, default 3, bicubic): below 384, resize the shorter side to
///   int(s / crop_pct) (the longer to int(that x long / short)) and centre-crop s x s at offset
///   floor((L - s) / 2); at 384 and above, resize to s x s with no crop;
/// - `do_rescale` (default true), `rescale_factor` (default 1/255): float32(float64(x) x factor);
/// - `do_normalize` (default true), `image_mean`, `image_std` (a number or three; default 0.5
///   each, transformers' `IMAGENET_STANDARD_*`): (x - mean) / std in float32.
///
/// Absent keys take `ConvNextImageProcessor`'s defaults, so the metadata always states the whole
/// transform. What the processor would do differently from this (another processor class, a
/// second centre crop, padding, a size without `shortest_edge`) is refused, as is a value of the
/// wrong kind and a null where transformers would use the value (it fails on it, or skips the
/// step): one error naming the file and the key.
public enum TransformersPreprocessing {
    public static let fileName = "preprocessor_config.json"

    /// PIL's resampling filters by code, with the names `preprocess.interpolation` uses.
    static let filters = [0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"]

    /// The processor classes whose transform this reproduces (`image_processor_type`, or
    /// `feature_extractor_type` in older files).
    static let processors: Set<String> = [
        "ConvNextImageProcessor", "ConvNextImageProcessorFast",
        "ConvNextImageProcessorPil", "ConvNextFeatureExtractor",
    ]

    /// The metadata for the folder's `preprocessor_config.json`; [:] when there is none.
    public static func metadata(folder: String) throws -> [String: MetadataValue] {
        let path = URL(fileURLWithPath: folder).appendingPathComponent(fileName).path
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CNXError("\(path): cannot read (\(error.localizedDescription))")
        }
        // JSONDecoder reads decimals exactly (1/255 written by Python comes back as 1.0 / 255);
        // JSONSerialization here may be one unit in the last place off.
        let object: JSON
        do { object = try JSONDecoder().decode(JSON.self, from: data) } catch {
            throw CNXError("\(path): not valid JSON (\(decodingMessage(error)))")
        }
        guard case .object(let config) = object else { throw CNXError("\(path): not a JSON object") }
        do {
            return try metadata(config: config)
        } catch let e as CNXError {
            throw e.inFile(path)
        }
    }

    /// The metadata for a parsed `preprocessor_config.json`; errors name the key, not the file.
    static func metadata(config c: [String: JSON]) throws -> [String: MetadataValue] {
        for key in ["image_processor_type", "feature_extractor_type"] {
            guard let v = c[key], v != .null else { continue }
            guard case .string(let name) = v else { throw CNXError("\(key) is \(v), not a string") }
            guard processors.contains(name) else {
                throw CNXError(
                    "\(key) is '\(name)': only ConvNextImageProcessor's transform is reproduced; "
                        + "remove \(fileName) to convert without the preprocessing")
            }
        }
        // Steps ConvNextImageProcessor does not take unless told to (null means off).
        for key in ["do_center_crop", "do_pad"] where c[key] != .null {
            if try flag(c, key, default: false) {
                throw CNXError("\(key) is true: ConvNextImageProcessor's own transform has no such step, and it is not reproduced")
            }
        }
        let resizes = try flag(c, "do_resize", default: true)
        let side = try shortestEdge(c)
        var m: [String: MetadataValue] = [
            MetadataKey.inputSize: .ints([Int64(side), Int64(side)]),
            MetadataKey.resizeMode: .string(!resizes ? "none" : side < 384 ? "shorter_side" : "square"),
            MetadataKey.cropOffset: .string("floor"),
        ]
        if resizes && side < 384 || c["crop_pct"] != .null {
            let cropPct = try number(c, "crop_pct", default: 224.0 / 256)
            guard cropPct > 0 else { throw CNXError("crop_pct \(cropPct) must be positive") }
            m[MetadataKey.cropPct] = .double(cropPct)
        }
        if resizes || c["resample"] != .null {
            let code = try integer(c, "resample", default: 3)
            guard let filter = filters[code] else {
                let known = filters.keys.sorted().map { "\($0) \(filters[$0]!)" }.joined(separator: ", ")
                throw CNXError("resample \(code) is not a PIL filter (\(known))")
            }
            m[MetadataKey.interpolation] = .string(filter)
        }
        var factor = 1.0
        if try flag(c, "do_rescale", default: true) {
            factor = try number(c, "rescale_factor", default: 1.0 / 255)
            guard factor > 0 else { throw CNXError("rescale_factor \(factor) must be positive") }
        }
        m[MetadataKey.rescaleFactor] = .double(factor)
        var mean: [Float] = [0, 0, 0], std: [Float] = [1, 1, 1]
        if try flag(c, "do_normalize", default: true) {
            mean = try channels(c, "image_mean", default: 0.5)
            std = try channels(c, "image_std", default: 0.5)
            guard std.allSatisfy({ $0 != 0 }) else { throw CNXError("image_std \(std) has a zero") }
        }
        m[MetadataKey.mean] = .floats(mean)
        m[MetadataKey.std] = .floats(std)
        return m
    }

    // MARK: - Typed reads

    /// A JSON value, with booleans and numbers apart (JSONSerialization's NSNumber mixes them).
    enum JSON: Decodable, Equatable, CustomStringConvertible {
        case null
        case bool(Bool)
        case number(Double)
        case string(String)
        case array([JSON])
        case object([String: JSON])

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let v = try? c.decode(Bool.self) {
                self = .bool(v)
            } else if let v = try? c.decode(Double.self) {
                self = .number(v)
            } else if let v = try? c.decode(String.self) {
                self = .string(v)
            } else if let v = try? c.decode([JSON].self) {
                self = .array(v)
            } else {
                self = .object(try c.decode([String: JSON].self))
            }
        }

        /// Short, for messages: `"224"`, `[0.5,0.5]`, `{"height":224,"width":224}`.
        var description: String {
            let text: String
            switch self {
            case .null: text = "null"
            case .bool(let b): text = b ? "true" : "false"
            case .number(let n): text = n.rounded() == n && abs(n) < 1e15 ? String(Int64(n)) : String(n)
            case .string(let s): text = "\"" + s + "\""
            case .array(let a): text = "[" + a.map(\.description).joined(separator: ",") + "]"
            case .object(let o): text = "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!)" }.joined(separator: ",") + "}"
            }
            return text.count > 60 ? String(text.prefix(60)) + "..." : text
        }
    }

    /// The value; nil when the key is absent (transformers then uses the class default). A null
    /// is an error: transformers keeps it and fails, or silently skips the step.
    static func value(_ c: [String: JSON], _ key: String) throws -> JSON? {
        guard let v = c[key] else { return nil }
        guard v != .null else { throw CNXError("\(key) is null; give a value or leave the key out") }
        return v
    }

    static func flag(_ c: [String: JSON], _ key: String, default fallback: Bool) throws -> Bool {
        guard let v = try value(c, key) else { return fallback }
        guard case .bool(let b) = v else { throw CNXError("\(key) is \(v), not true or false") }
        return b
    }

    static func number(_ c: [String: JSON], _ key: String, default fallback: Double) throws -> Double {
        guard let v = try value(c, key) else { return fallback }
        guard case .number(let n) = v, n.isFinite else { throw CNXError("\(key) is \(v), not a number") }
        return n
    }

    static func integer(_ c: [String: JSON], _ key: String, default fallback: Int) throws -> Int {
        guard let v = try value(c, key) else { return fallback }
        guard case .number(let n) = v, n.rounded() == n, abs(n) < 1e9 else { throw CNXError("\(key) is \(v), not an integer") }
        return Int(n)
    }

    /// `image_mean` / `image_std`: one number for every channel, or three.
    static func channels(_ c: [String: JSON], _ key: String, default fallback: Float) throws -> [Float] {
        guard let v = try value(c, key) else { return [fallback, fallback, fallback] }
        let items: [JSON]
        if case .array(let a) = v { items = a } else { items = [v, v, v] }
        let values = items.compactMap { item -> Float? in
            guard case .number(let n) = item, Float(n).isFinite else { return nil }
            return Float(n)
        }
        guard items.count == 3, values.count == 3 else { throw CNXError("\(key) is \(v), not a number or three numbers (RGB)") }
        return values
    }

    /// `size`: {"shortest_edge": s} (other keys are ignored, as ConvNeXt's resize ignores them),
    /// or a bare integer s (older files); default 384.
    static func shortestEdge(_ c: [String: JSON]) throws -> Int {
        guard let v = try value(c, "size") else { return 384 }
        let edge: Int
        if case .object(let dict) = v {
            guard dict["shortest_edge"] != nil else { throw CNXError("size is \(v): ConvNextImageProcessor needs size.shortest_edge") }
            edge = try integer(dict, "shortest_edge", default: 0)
        } else {
            edge = try integer(c, "size", default: 0)
        }
        guard edge >= 1 && edge <= 65536 else { throw CNXError("size.shortest_edge \(edge) must be between 1 and 65536") }
        return edge
    }

    /// A decoding error as one line.
    static func decodingMessage(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            return context.underlyingError.map { "\($0.localizedDescription)" } ?? context.debugDescription
        }
        return "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
