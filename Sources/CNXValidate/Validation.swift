import CNXGraph
import Foundation

/// What `validate` found: the two models on the same samples.
public struct ValidationResult: Sendable {
    public var modelPath: String
    public var modelRuntime: String
    public var referencePath: String
    public var referenceRuntime: String
    public var dataPath: String
    public var sampleShape: [Int]
    public var labelSource: String?
    public var classNames: [String]?
    /// The transform applied to images (nil for a `.npy` batch).
    public var preprocessing: Preprocessing?
    public var metrics: MetricsAccumulator
    /// Seconds spent inside each model's predictions.
    public var modelSeconds: Double
    public var referenceSeconds: Double
    /// Block-by-block comparison, when asked for.
    public var perLayer: [LayerComparison]?
    /// For models with several outputs, each output compared (in the model's output order); then
    /// `metrics` holds nothing: classification metrics are for single-output models. Nil for a
    /// single-output model.
    public var outputs: [OutputMetrics]? = nil
    /// Where each preprocessing setting (size, crop_pct, interpolation, mean, std) came from:
    /// a flag, a model file's metadata, or ImageNet's defaults. Nil for a `.npy` batch.
    public var preprocessingSources: [String: String]? = nil

    public var samples: Int { outputs?.first?.samples ?? metrics.samples }
    /// Whether the models have several outputs, compared one by one.
    public var isMultiOutput: Bool { outputs != nil }

    /// The worst over the outputs: the lowest mean cosine and SQNR, the largest difference (for a
    /// single-output model, its logits' figures). NaN anywhere gives NaN.
    public var worstMeanCosine: Double {
        guard let outputs else { return metrics.meanCosine }
        return worst(outputs.map(\.meanCosine), lowest: true)
    }
    public var worstSQNRDB: Double {
        guard let outputs else { return metrics.sqnrDB }
        return worst(outputs.map(\.sqnrDB), lowest: true)
    }
    public var largestAbsDiff: Double {
        guard let outputs else { return Double(metrics.maxAbsDiff) }
        return worst(outputs.map { Double($0.maxAbsDiff) }, lowest: false)
    }

    private func worst(_ values: [Double], lowest: Bool) -> Double {
        if values.contains(where: \.isNaN) { return .nan }
        return (lowest ? values.min() : values.max()) ?? .nan
    }
    public var modelThroughput: Double { modelSeconds > 0 ? Double(samples) / modelSeconds : 0 }
    public var referenceThroughput: Double { referenceSeconds > 0 ? Double(samples) / referenceSeconds : 0 }

    /// Whether a single-output (classification) model stays within a budget of `maxDrop`: with labels, top-1 accuracy no more
    /// than `maxDrop` percentage points below the reference's; without, top-1 agreement at least
    /// 100 - `maxDrop` percent.
    public func withinBudget(maxDrop: Double) -> Bool {
        if metrics.hasLabels { return metrics.accuracyDropPoints <= maxDrop + 1e-9 }
        return metrics.top1Agreement * 100 >= 100 - maxDrop - 1e-9
    }

    /// One sentence on the budget, for people.
    public func budgetVerdict(maxDrop: Double) -> String {
        let ok = withinBudget(maxDrop: maxDrop)
        let limit = String(format: "%g", maxDrop)
        if metrics.hasLabels {
            return String(
                format: "accuracy drop %.2f points %@ --max-drop %@", metrics.accuracyDropPoints, ok ? "is within" : "exceeds", limit)
        }
        return String(
            format: "top-1 agreement %.2f%% %@ the %@%% that --max-drop %@ requires", metrics.top1Agreement * 100,
            ok ? "meets" : "is below", String(format: "%g", 100 - maxDrop), limit)
    }
}

/// Runs a model and a reference on the same samples and compares them.
public enum Validation {
    /// The outputs to compare one by one when either model has several: the model's output names,
    /// in its order. Nil when both have one output (compared as logits, whatever their names).
    /// - Throws: `CNXError` when the two models' output names differ.
    public static func pairedOutputs(model: Predictor, reference: Predictor) throws -> [String]? {
        let mo = model.outputNames, ro = reference.outputNames
        guard mo.count > 1 || ro.count > 1 else { return nil }
        guard Set(mo) == Set(ro), mo.count == ro.count else {
            func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
            let onlyM = mo.filter { !ro.contains($0) }, onlyR = ro.filter { !mo.contains($0) }
            throw CNXError(
                "\(model.path) has outputs \(list(mo)) and \(reference.path) has \(list(ro)): outputs are compared by name, "
                    + "and these differ (only in the model: \(list(onlyM)); only in the reference: \(list(onlyR)))")
        }
        return mo
    }

    /// - Parameters:
    ///   - batch: samples per prediction. Batches start at multiples of `batch` counted from the
    ///     first sample of the data (not of `range`), so that a shard predicts each sample in the
    ///     same batch as an unsharded run would, wherever the shard starts.
    ///   - progress: shows a progress line on stderr when it is a terminal.
    ///   - range: the samples to validate (a shard); all by default.
    ///   - decodeAhead: image batches decoded and transformed ahead on another thread while the
    ///     models run (0: on the calling thread, between predictions).
    ///   - collect: also gathers what the HTML report shows (single-output models).
    ///   - saveReference: given each batch's sample range and the reference's logits (single-output
    ///     models), to keep them for later runs (`--save-logits`).
    /// - Throws: `CNXError` naming the file or sample at fault.
    public static func run(
        model: Predictor, reference: Predictor, data: Dataset, batch: Int = 32,
        progress: Bool = true, range: Range<Int>? = nil, decodeAhead: Int = 2,
        collect: ReportCollector? = nil,
        saveReference: ((Range<Int>, Tensor) throws -> Void)? = nil
    ) throws -> ValidationResult {
        guard batch >= 1 else { throw CNXError("the batch size must be at least 1") }
        if let names = try pairedOutputs(model: model, reference: reference) {
            return try runOutputs(
                names, model: model, reference: reference, data: data, batch: batch, progress: progress,
                range: range ?? 0..<data.count, decodeAhead: decodeAhead)
        }
        return try runClassification(
            model: model, referencePath: reference.path, referenceRuntime: reference.runtime,
            referenceOutput: { _, x in
                do { return try reference.predict(x) } catch let e as CNXError { throw e.inFile(reference.path) }
            },
            data: data, batch: batch, progress: progress, range: range ?? 0..<data.count,
            decodeAhead: decodeAhead, collect: collect, saveReference: saveReference)
    }

    /// Validates against logits a reference gave earlier (`--reference-logits`): `logits` holds
    /// one row per sample, of the whole data (row i is sample i) or of `range` alone (row 0 is
    /// its first sample).
    public static func run(
        model: Predictor, referenceLogits logits: Tensor, path: String, data: Dataset, batch: Int = 32,
        progress: Bool = true, range: Range<Int>? = nil, decodeAhead: Int = 2,
        collect: ReportCollector? = nil
    ) throws -> ValidationResult {
        guard batch >= 1 else { throw CNXError("the batch size must be at least 1") }
        let range = range ?? 0..<data.count
        guard model.outputNames.count == 1 else {
            throw CNXError(
                "\(path): reference logits serve single-output (classification) models; \(model.path) has \(model.outputNames.count) outputs"
            )
        }
        guard logits.dtype == .float32, logits.shape.count == 2 else {
            throw CNXError("\(path): reference logits must be a float32 samples x classes array, got \(logits.dtype.name) \(logits.shape)")
        }
        let first: Int
        if logits.shape[0] == data.count {
            first = 0
        } else if logits.shape[0] == range.count {
            first = range.lowerBound
        } else {
            throw CNXError(
                "\(path): \(logits.shape[0]) rows of logits, but \(data.path) has \(data.count) samples"
                    + (range.count == data.count ? "" : " (this shard: \(range.count))"))
        }
        if let classes = model.classes, classes != logits.shape[1] {
            throw CNXError("\(path): \(logits.shape[1]) classes of logits, but \(model.path) has \(classes)")
        }
        let classes = logits.shape[1]
        return try runClassification(
            model: model, referencePath: path, referenceRuntime: "saved logits",
            referenceOutput: { r, _ in
                let rows = Tensor(zeros: .float32, shape: [r.count, classes])
                rows.copyFloats(from: logits, offset: (r.lowerBound - first) * classes, count: r.count * classes)
                return rows
            },
            data: data, batch: batch, progress: progress, range: range, decodeAhead: decodeAhead,
            collect: collect, saveReference: nil)
    }

    /// The batches of `range`, aligned to multiples of `batch` from sample 0.
    static func batches(_ range: Range<Int>, batch: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min((start / batch + 1) * batch, range.upperBound)
            out.append(start..<end)
            start = end
        }
        return out
    }

    static func runClassification(
        model: Predictor, referencePath: String, referenceRuntime: String,
        referenceOutput: (Range<Int>, Tensor) throws -> Tensor, data: Dataset, batch: Int,
        progress: Bool, range: Range<Int>, decodeAhead: Int, collect: ReportCollector?,
        saveReference: ((Range<Int>, Tensor) throws -> Void)?
    ) throws -> ValidationResult {
        guard range.lowerBound >= 0, range.upperBound <= data.count else {
            throw CNXError("samples \(range) are outside \(data.path)'s \(data.count)")
        }
        var metrics = MetricsAccumulator()
        let seconds = try loop(data: data, batch: batch, range: range, progress: progress, decodeAhead: decodeAhead) { r, x in
            let y: Tensor
            do { y = try model.predict(x) } catch let e as CNXError { throw e.inFile(model.path) }
            return y
        } reference: { r, x in
            try referenceOutput(r, x)
        } compare: { r, y, ref in
            guard y.shape == ref.shape else {
                throw CNXError("\(model.path) gives logits of shape \(y.shape) where \(referencePath) gives \(ref.shape)")
            }
            try saveReference?(r, ref)
            let classes = y.shape[1]
            var labels: ArraySlice<Int>?
            if let all = data.labels {
                labels = all[r]
                if let bad = labels?.firstIndex(where: { $0 >= classes }) {
                    throw CNXError(
                        "\(data.labelSource ?? data.path): label \(all[bad]) of sample \(bad) is not below the model's \(classes) classes")
                }
            }
            y.withUnsafeFloats { m in
                ref.withUnsafeFloats { rf in
                    metrics.add(model: m, reference: rf, classes: classes, labels: labels)
                    collect?.add(first: r.lowerBound, model: m, reference: rf, classes: classes, labels: labels)
                }
            }
        }
        var preprocessing: Preprocessing?
        if case .images(_, let p) = data.source { preprocessing = p }
        return ValidationResult(
            modelPath: model.path, modelRuntime: model.runtime, referencePath: referencePath,
            referenceRuntime: referenceRuntime, dataPath: data.path, sampleShape: data.sampleShape,
            labelSource: data.labelSource, classNames: data.classNames, preprocessing: preprocessing,
            metrics: metrics, modelSeconds: seconds.model, referenceSeconds: seconds.reference, perLayer: nil)
    }

    /// The loop every validation runs: the samples of `range` in batches, decoded ahead on
    /// other threads, each batch run on the model and then on the reference (timed apart) and
    /// handed to `compare`, with a progress bar. Returns the seconds spent in each.
    static func loop<Y, R>(
        data: Dataset, batch: Int, range: Range<Int>, progress: Bool, decodeAhead: Int,
        model: (Range<Int>, Tensor) throws -> Y, reference: (Range<Int>, Tensor) throws -> R,
        compare: (Range<Int>, Y, R) throws -> Void
    ) throws -> (model: Double, reference: Double) {
        var modelSeconds = 0.0, referenceSeconds = 0.0
        let bar = Progress("validating", total: range.count, enabled: progress ? nil : false, logEvery: 30)
        defer { bar.finish() }
        let prefetch = Prefetcher(data: data, ranges: batches(range, batch: batch), depth: decodeAhead)
        defer { prefetch.cancel() }
        while let (r, x) = try prefetch.next() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = try model(r, x)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let ref = try reference(r, x)
            let t2 = DispatchTime.now().uptimeNanoseconds
            modelSeconds += Double(t1 - t0) / 1e9
            referenceSeconds += Double(t2 - t1) / 1e9
            try compare(r, y, ref)
            bar.advance(by: r.count)
        }
        return (modelSeconds, referenceSeconds)
    }

    /// Every output named in `names`, compared one by one.
    static func runOutputs(
        _ names: [String], model: Predictor, reference: Predictor, data: Dataset, batch: Int,
        progress: Bool, range all: Range<Int>, decodeAhead: Int
    ) throws -> ValidationResult {
        guard all.lowerBound >= 0, all.upperBound <= data.count else {
            throw CNXError("samples \(all) are outside \(data.path)'s \(data.count)")
        }
        var outputs = names.map { OutputMetrics(name: $0) }
        let seconds = try loop(data: data, batch: batch, range: all, progress: progress, decodeAhead: decodeAhead) { _, x in
            do { return try model.predictAll(x, names: names) } catch let e as CNXError { throw e.inFile(model.path) }
        } reference: { _, x in
            do { return try reference.predictAll(x, names: names) } catch let e as CNXError { throw e.inFile(reference.path) }
        } compare: { range, ys, rs in
            for (k, (y, r)) in zip(ys, rs).enumerated() {
                guard y.shape == r.shape else {
                    throw CNXError("\(model.path) gives output '\(names[k])' of shape \(y.shape) where \(reference.path) gives \(r.shape)")
                }
                if outputs[k].samples == 0 { outputs[k].shape = Array(y.shape.dropFirst()) }
                y.withUnsafeFloats { m in r.withUnsafeFloats { rf in outputs[k].add(model: m, reference: rf, samples: range.count) } }
            }
        }
        var preprocessing: Preprocessing?
        if case .images(_, let p) = data.source { preprocessing = p }
        return ValidationResult(
            modelPath: model.path, modelRuntime: model.runtime, referencePath: reference.path,
            referenceRuntime: reference.runtime, dataPath: data.path, sampleShape: data.sampleShape,
            labelSource: data.labelSource, classNames: data.classNames, preprocessing: preprocessing,
            metrics: MetricsAccumulator(), modelSeconds: seconds.model, referenceSeconds: seconds.reference,
            perLayer: nil, outputs: outputs)
    }
}
