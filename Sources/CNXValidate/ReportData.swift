import CNXFormat
import CNXGraph
import CNXReference
import Foundation

/// One sample as the HTML report shows it: each model's most probable classes.
public struct ReportSample: Sendable {
    /// Position of the sample in the data.
    public var index: Int
    public var label: Int?
    /// The model's and the reference's top classes (id, softmax probability), most probable first.
    public var model: [(id: Int, probability: Double)]
    public var reference: [(id: Int, probability: Double)]
    /// Total variation distance between the two softmax distributions (half the summed absolute
    /// difference, 0...1): how far the model's answer moved from the reference's.
    public var divergence: Double

    public var agrees: Bool { model.first?.id == reference.first?.id }
}

/// What the HTML report needs beyond `MetricsAccumulator`, gathered batch by batch beside it
/// (`Validation.run(..., collect:)`): confusion counts and the samples worth looking at. Keeps
/// no logits: a few counts per class pair that occurs, and a capped list of samples.
public final class ReportCollector: @unchecked Sendable {
    /// At most this many disagreeing samples are kept (those whose probabilities moved most).
    public let galleryCap: Int
    /// When fewer samples than this disagree, the agreeing samples whose probabilities moved most
    /// fill the gallery up to this count ("closest calls").
    public let closestCallsCap: Int
    public private(set) var classes = 0
    public private(set) var samples = 0
    public private(set) var disagreements = 0
    /// Counts keyed by `row * classes + column`: label against the model's top-1, label against
    /// the reference's top-1 (with labels), and the reference's top-1 against the model's.
    public private(set) var modelConfusion: [Int: Int] = [:]
    public private(set) var referenceConfusion: [Int: Int] = [:]
    public private(set) var flips: [Int: Int] = [:]
    /// Disagreeing samples, largest divergence first.
    public private(set) var worstDisagreements: [ReportSample] = []
    /// Agreeing samples, largest divergence first.
    public private(set) var closestCalls: [ReportSample] = []

    public init(galleryCap: Int = 32, closestCallsCap: Int = 12) {
        self.galleryCap = galleryCap
        self.closestCallsCap = closestCallsCap
    }

    /// Adds a batch: logits [n, classes] of the model and the reference (row-major), for samples
    /// `first ..< first + n`, with their labels when known.
    public func add(
        first: Int, model: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>, classes c: Int,
        labels: ArraySlice<Int>?
    ) {
        precondition(model.count == reference.count && c > 0 && model.count % c == 0)
        classes = c
        func logits(_ all: UnsafeBufferPointer<Float>, _ sample: Int) -> UnsafeBufferPointer<Float> {
            UnsafeBufferPointer(start: all.baseAddress.map { $0 + sample * c }, count: c)
        }
        for s in 0..<model.count / c {
            let m = logits(model, s), r = logits(reference, s)
            let mt = topK(m, min(3, c)), rt = topK(r, min(3, c))
            let label = labels.map { $0[$0.startIndex + s] }
            if let label {
                modelConfusion[label * c + mt[0], default: 0] += 1
                referenceConfusion[label * c + rt[0], default: 0] += 1
            }
            flips[rt[0] * c + mt[0], default: 0] += 1
            let agrees = mt[0] == rt[0]
            if !agrees { disagreements += 1 }
            samples += 1
            let cap = agrees ? closestCallsCap : galleryCap
            guard cap > 0 else { continue }
            let list = agrees ? closestCalls : worstDisagreements
            let pm = Classification.softmax(m), pr = Classification.softmax(r)
            var tv = 0.0
            for i in 0..<c { tv += abs(pm[i] - pr[i]) }
            tv /= 2
            if list.count == cap, let last = list.last, !(tv > last.divergence) { continue }
            let sample = ReportSample(
                index: first + s, label: label, model: mt.map { ($0, pm[$0]) },
                reference: rt.map { ($0, pr[$0]) }, divergence: tv)
            if agrees {
                closestCalls = Self.inserted(sample, into: closestCalls, cap: cap)
            } else {
                worstDisagreements = Self.inserted(sample, into: worstDisagreements, cap: cap)
            }
        }
    }

    /// `list` (largest divergence first) with `sample` in its place, at most `cap` long; ties
    /// keep the earlier sample first.
    static func inserted(_ sample: ReportSample, into list: [ReportSample], cap: Int) -> [ReportSample] {
        var list = list
        let pos = list.firstIndex { sample.divergence > $0.divergence } ?? list.count
        list.insert(sample, at: pos)
        if list.count > cap { list.removeLast() }
        return list
    }

    /// The samples the gallery shows: every kept disagreement, then closest calls up to
    /// `closestCallsCap` when there are fewer disagreements than that.
    public var gallery: (disagreements: [ReportSample], closestCalls: [ReportSample]) {
        (worstDisagreements, Array(closestCalls.prefix(max(0, closestCallsCap - worstDisagreements.count))))
    }

    /// Off-diagonal cells of a confusion dictionary, largest count first: (row, column, count).
    public func pairs(_ counts: [Int: Int]) -> [(row: Int, column: Int, count: Int)] {
        counts.compactMap { key, n in
            let (row, column) = (key / max(classes, 1), key % max(classes, 1))
            return row == column ? nil : (row, column, n)
        }.sorted { $0.count != $1.count ? $0.count > $1.count : ($0.row, $0.column) < ($1.row, $1.column) }
    }
}

/// What the report says about a model file: where it is, what it is, how big, which bytes.
public struct ModelFacts: Sendable {
    public var path: String
    /// "cnx", "onnx", "safetensors", "pth".
    public var format: String
    /// Bytes of the file (with an ONNX file's external data).
    public var bytes: Int
    /// SHA-256 of the file, hex (of the weights file for a checkpoint folder); nil when unreadable.
    public var sha256: String?
    /// What runs it (the fast runtime or the reference executor).
    public var runtime: String
    /// One line on the arithmetic: "float32", or which layers are int8 and which float32.
    public var precision: String
    /// For each layer `PerLayer` compares (stem, blocks, downsamples, head, in graph order): its
    /// precision, "int8", "float32" or, for a block, "pw1 int8, pw2 float32" and the like. Empty
    /// for a graph that is not fused.
    public var layerPrecisions: [String]
    /// Whether any layer is int8.
    public var hasInt8: Bool
    /// The SHA-256 and file name of the model a `.cnx` was converted from, as its metadata records.
    public var sourceSHA256: String?
    public var sourceFileName: String?
    /// Architecture in words ("convnext_tiny", "ConvNeXt, depths 2,2,2,2, dims 24,48,64,80").
    public var architecture: String?

    public init(
        path: String, format: String, bytes: Int, sha256: String?, runtime: String, precision: String,
        layerPrecisions: [String] = [], hasInt8: Bool = false, sourceSHA256: String? = nil,
        sourceFileName: String? = nil, architecture: String? = nil
    ) {
        self.path = path
        self.format = format
        self.bytes = bytes
        self.sha256 = sha256
        self.runtime = runtime
        self.precision = precision
        self.layerPrecisions = layerPrecisions
        self.hasInt8 = hasInt8
        self.sourceSHA256 = sourceSHA256
        self.sourceFileName = sourceFileName
        self.architecture = architecture
    }

    /// The facts of a loaded model: `file` is the file holding its bytes (the path itself, or a
    /// checkpoint folder's weights file), `graph` the graph as loaded (a `.cnx`'s is fused).
    public static func of(
        path: String, file: String, format: String, graph: Graph, metadata: [String: MetadataValue],
        runtime: String
    ) -> ModelFacts {
        var bytes = fileSize(file)
        if let external = graph.metadata["external_data"] {
            let dir = (file as NSString).deletingLastPathComponent
            for name in external.split(separator: ",") {
                bytes += fileSize((dir as NSString).appendingPathComponent(name.trimmingCharacters(in: .whitespaces)))
            }
        }
        let layers = PerLayer.layers(graph)
        var perLayer: [String] = []
        var int8 = 0, float = 0
        for i in layers {
            let node = graph.nodes[i]
            let gemms = node.op == .block ? [1, 2] : [1]
            // Each GEMM layer's precision (int8, float32, bfloat16 or float16), as the payload reads it.
            let payload = try? FusedPayload(node, in: graph)
            let kinds = gemms.map { payload?.layers[$0]?.precision.name ?? "float32" }
            int8 += kinds.filter { $0 == "int8" }.count
            float += kinds.filter { $0 != "int8" }.count
            if Set(kinds).count == 1 {
                perLayer.append(kinds[0])
            } else {
                perLayer.append(zip(gemms, kinds).map { "pw\($0) \($1)" }.joined(separator: ", "))
            }
        }
        var precision: String
        if int8 == 0 {
            let dtypes = Set(graph.initializers.values.map(\.dtype.name)).sorted()
            precision = dtypes.isEmpty || dtypes == ["float32"] ? "float32" : "weights " + dtypes.joined(separator: ", ")
        } else {
            precision = "int8: \(int8) of \(int8 + float) GEMM layers"
            if let kept = metadata[MetadataKey.quantizationFloatLayers]?.stringsValue {
                precision += kept.isEmpty ? "; none kept float32" : "; float32: " + kept.joined(separator: ", ")
            }
            if let method = metadata[MetadataKey.quantizationMethod]?.stringValue { precision += "; calibration \(method)" }
        }
        func describe(_ family: String?, _ variant: String?, _ depths: [Int], _ dims: [Int]) -> String {
            [
                family, variant ?? "(custom)", "depths " + depths.map(String.init).joined(separator: ","),
                "dims " + dims.map(String.init).joined(separator: ","),
            ].compactMap { $0 }.joined(separator: " ")
        }
        var architecture: String?
        if let depths = metadata[MetadataKey.depths]?.intsValue, let dims = metadata[MetadataKey.dims]?.intsValue {
            architecture = describe(
                metadata[MetadataKey.family]?.stringValue, metadata[MetadataKey.variant]?.stringValue,
                depths.map { Int($0) }, dims.map { Int($0) })
        } else if let a = Architecture.recognise(graph) {
            architecture = describe(a.family, a.variant, a.depths, a.dims)
        }
        return ModelFacts(
            path: path, format: format, bytes: bytes, sha256: try? SHA256.hex(path: file), runtime: runtime,
            precision: precision, layerPrecisions: perLayer, hasInt8: int8 > 0,
            sourceSHA256: metadata[MetadataKey.sourceSHA256]?.stringValue,
            sourceFileName: metadata[MetadataKey.sourceFileName]?.stringValue, architecture: architecture)
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}
