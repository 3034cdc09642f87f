import CNXGraph
import CNXRuntime
import Foundation

/// Indices of the `k` largest values of `row`, largest first (ties: the lower index first).
public func topK(_ row: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
    var best: [Int] = []
    best.reserveCapacity(k + 1)
    for i in 0..<row.count {
        let v = row[i]
        if best.count == k, let last = best.last, !(v > row[last]) { continue }
        var pos = best.count
        while pos > 0 && v > row[best[pos - 1]] { pos -= 1 }
        best.insert(i, at: pos)
        if best.count > k { best.removeLast() }
    }
    return best
}

public func topK(_ row: [Float], _ k: Int) -> [Int] {
    row.withUnsafeBufferPointer { topK($0, k) }
}

/// Cosine similarity of two vectors; 1 when both are zero, 0 when only one is.
public func cosineSimilarity(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Double {
    var dot = 0.0, na = 0.0, nb = 0.0
    for i in 0..<a.count {
        let x = Double(a[i]), y = Double(b[i])
        dot += x * y
        na += x * x
        nb += y * y
    }
    if na == 0 && nb == 0 { return 1 }
    if na == 0 || nb == 0 { return 0 }
    return dot / (na.squareRoot() * nb.squareRoot())
}

/// The exact sums over samples of a model's outputs against the reference's (cosine
/// similarity, signal and noise energy) that the whole-model and per-output figures share,
/// and the figures they give.
public protocol AgreementSums {
    var samples: Int { get }
    var totals: AgreementTotals { get }
}

extension AgreementSums {
    public var cosineTotal: ExactSum { totals.cosine }
    public var signalTotal: ExactSum { totals.signal }
    public var noiseTotal: ExactSum { totals.noise }
    /// The largest |model - reference| over every value seen (NaN when any difference is).
    public var maxAbsDiff: Float { totals.maxAbsDiff }
    public var cosineSum: Double { cosineTotal.value }
    public var signal: Double { signalTotal.value }
    public var noise: Double { noiseTotal.value }
    public var meanCosine: Double { samples > 0 ? cosineSum / Double(samples) : 0 }
    public var sqnrDB: Double { sqnr(signal: signal, noise: noise) }
}

/// The figures `validate` reports, gathered batch by batch so that no logits are kept.
public struct MetricsAccumulator: AgreementSums, Sendable {
    public private(set) var samples = 0
    public private(set) var classes = 0
    /// Samples whose top-1 class agrees between model and reference.
    public private(set) var top1Agreements = 0
    /// Sum over samples of |top-k(model) ∩ top-k(reference)| (k = min(5, classes)).
    public private(set) var top5OverlapCount = 0
    /// Exact sums (independent of the order samples come in, so shards merge bit for bit):
    /// of each sample's cosine similarity, of each sample's sum of reference² and of
    /// (model - reference)² (each sample's own sums taken in double, in element order).
    public private(set) var totals = AgreementTotals()
    // With labels:
    public private(set) var labelled = 0
    public private(set) var modelTop1 = 0
    public private(set) var referenceTop1 = 0
    public private(set) var modelTop5 = 0
    public private(set) var referenceTop5 = 0
    /// Per class id: samples, correct by the model, correct by the reference.
    public private(set) var perClass: [Int: (samples: Int, model: Int, reference: Int)] = [:]

    public init() {}

    /// The sums a validation part recorded.
    init(
        samples: Int, classes: Int, top1Agreements: Int, top5OverlapCount: Int, cosine: ExactSum, signal: ExactSum, noise: ExactSum,
        maxAbsDiff: Float, labelled: Int, modelTop1: Int, referenceTop1: Int, modelTop5: Int, referenceTop5: Int,
        perClass: [Int: (samples: Int, model: Int, reference: Int)]
    ) {
        self.samples = samples
        self.classes = classes
        self.top1Agreements = top1Agreements
        self.top5OverlapCount = top5OverlapCount
        totals = AgreementTotals(cosine: cosine, signal: signal, noise: noise, maxAbsDiff: maxAbsDiff)
        self.labelled = labelled
        self.modelTop1 = modelTop1
        self.referenceTop1 = referenceTop1
        self.modelTop5 = modelTop5
        self.referenceTop5 = referenceTop5
        self.perClass = perClass
    }

    /// k of top-k overlap and top-k accuracy: 5, or the class count when smaller.
    public var k: Int { min(5, classes) }

    /// Adds a batch: logits [n, classes] of the model and the reference (row-major), and the
    /// samples' labels when known.
    public mutating func add(
        model: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>, classes c: Int, labels: ArraySlice<Int>?
    ) {
        precondition(model.count == reference.count && c > 0 && model.count % c == 0)
        classes = c
        let n = model.count / c
        let k = min(5, c)
        for s in 0..<n {
            let m = UnsafeBufferPointer(rebasing: model[s * c..<(s + 1) * c])
            let r = UnsafeBufferPointer(rebasing: reference[s * c..<(s + 1) * c])
            let mt = topK(m, k), rt = topK(r, k)
            if mt[0] == rt[0] { top1Agreements += 1 }
            top5OverlapCount += Set(mt).intersection(rt).count
            totals.add(m, r)
            if let labels {
                let label = labels[labels.startIndex + s]
                labelled += 1
                let mOK = mt[0] == label, rOK = rt[0] == label
                if mOK { modelTop1 += 1 }
                if rOK { referenceTop1 += 1 }
                if mt.contains(label) { modelTop5 += 1 }
                if rt.contains(label) { referenceTop5 += 1 }
                var entry = perClass[label] ?? (0, 0, 0)
                entry.samples += 1
                entry.model += mOK ? 1 : 0
                entry.reference += rOK ? 1 : 0
                perClass[label] = entry
            }
            samples += 1
        }
    }

    public mutating func add(model: [Float], reference: [Float], classes c: Int, labels: ArraySlice<Int>? = nil) {
        model.withUnsafeBufferPointer { m in
            reference.withUnsafeBufferPointer { r in add(model: m, reference: r, classes: c, labels: labels) }
        }
    }

    public var top1Agreement: Double { samples > 0 ? Double(top1Agreements) / Double(samples) : 0 }
    public var top5Overlap: Double { samples > 0 ? Double(top5OverlapCount) / Double(k * samples) : 0 }

    /// Adds the samples another accumulator saw (a shard of the same data): the result is the
    /// one accumulator that saw both, whatever the order.
    /// - Throws: `CNXError` when the two have different class counts.
    public mutating func merge(_ other: MetricsAccumulator) throws {
        if other.samples == 0 { return }
        if samples > 0 && classes != other.classes {
            throw CNXError("parts with \(classes) and \(other.classes) classes cannot be merged")
        }
        classes = other.classes
        samples += other.samples
        top1Agreements += other.top1Agreements
        top5OverlapCount += other.top5OverlapCount
        totals.merge(other.totals)
        labelled += other.labelled
        modelTop1 += other.modelTop1
        referenceTop1 += other.referenceTop1
        modelTop5 += other.modelTop5
        referenceTop5 += other.referenceTop5
        for (id, e) in other.perClass {
            var entry = perClass[id] ?? (0, 0, 0)
            entry.samples += e.samples
            entry.model += e.model
            entry.reference += e.reference
            perClass[id] = entry
        }
    }
    public var hasLabels: Bool { labelled > 0 }
    public var modelTop1Accuracy: Double { labelled > 0 ? Double(modelTop1) / Double(labelled) : 0 }
    public var referenceTop1Accuracy: Double { labelled > 0 ? Double(referenceTop1) / Double(labelled) : 0 }
    public var modelTop5Accuracy: Double { labelled > 0 ? Double(modelTop5) / Double(labelled) : 0 }
    public var referenceTop5Accuracy: Double { labelled > 0 ? Double(referenceTop5) / Double(labelled) : 0 }
    /// Accuracy lost by the model against the reference, in percentage points (negative: gained).
    public var accuracyDropPoints: Double { Double(referenceTop1 - modelTop1) * 100 / Double(max(labelled, 1)) }

    /// Per-class accuracy of model and reference, by class id.
    public var classAccuracies: [ClassAccuracy] {
        perClass.sorted { $0.key < $1.key }.map { id, e in
            ClassAccuracy(
                id: id, samples: e.samples, model: Double(e.model) / Double(e.samples),
                reference: Double(e.reference) / Double(e.samples))
        }
    }
}

/// One class's top-1 accuracy under the model and the reference.
public struct ClassAccuracy: Equatable, Sendable {
    public var id: Int
    public var samples: Int
    public var model: Double
    public var reference: Double
    /// In percentage points; negative when the model does worse.
    public var changePoints: Double { (model - reference) * 100 }
}

/// Model against reference on one output of any shape (a stage's feature map, say), gathered
/// batch by batch: the cosine similarity of each sample's values, SQNR over all values, and the
/// largest absolute difference.
public struct OutputMetrics: AgreementSums, Sendable {
    /// The graph output's name.
    public var name: String
    /// The output's shape for one sample (without the batch dimension).
    public var shape: [Int]
    public private(set) var samples = 0
    /// Exact sums, as in `MetricsAccumulator`.
    public private(set) var totals = AgreementTotals()

    public init(name: String, shape: [Int] = []) {
        self.name = name
        self.shape = shape
    }

    /// The sums a validation part recorded.
    init(name: String, shape: [Int], samples: Int, cosine: ExactSum, signal: ExactSum, noise: ExactSum, maxAbsDiff: Float) {
        self.name = name
        self.shape = shape
        self.samples = samples
        totals = AgreementTotals(cosine: cosine, signal: signal, noise: noise, maxAbsDiff: maxAbsDiff)
    }

    /// Adds a batch of `samples` samples: the model's and the reference's values, row-major, each
    /// sample's values contiguous.
    public mutating func add(model: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>, samples n: Int) {
        precondition(model.count == reference.count && n > 0 && model.count % n == 0)
        let per = model.count / n
        for s in 0..<n {
            let m = UnsafeBufferPointer(rebasing: model[s * per..<(s + 1) * per])
            let r = UnsafeBufferPointer(rebasing: reference[s * per..<(s + 1) * per])
            totals.add(m, r)
        }
        samples += n
    }

    public mutating func add(model: [Float], reference: [Float], samples n: Int) {
        model.withUnsafeBufferPointer { m in
            reference.withUnsafeBufferPointer { r in add(model: m, reference: r, samples: n) }
        }
    }

    /// Adds the samples another shard saw of the same output.
    public mutating func merge(_ other: OutputMetrics) throws {
        guard other.name == name else { throw CNXError("output '\(other.name)' cannot be merged into '\(name)'") }
        if other.samples == 0 { return }
        if samples > 0 && shape != other.shape {
            throw CNXError("output '\(name)' has shape \(shape) in one part and \(other.shape) in another")
        }
        shape = other.shape
        samples += other.samples
        totals.merge(other.totals)
    }
}

/// The exact sums of a model's outputs against the reference's over samples: cosine
/// similarities, the reference's energy (signal) and the differences' (noise), and the largest
/// difference. Shards' totals merge into the totals of the whole, whatever the order.
public struct AgreementTotals: Sendable {
    public private(set) var cosine = ExactSum()
    public private(set) var signal = ExactSum()
    public private(set) var noise = ExactSum()
    public private(set) var maxAbsDiff: Float = 0

    init() {}

    init(cosine: ExactSum, signal: ExactSum, noise: ExactSum, maxAbsDiff: Float) {
        (self.cosine, self.signal, self.noise, self.maxAbsDiff) = (cosine, signal, noise, maxAbsDiff)
    }

    /// One sample's contribution: its cosine similarity, its sum of reference² and of
    /// differences² (summed in double in element order, then added exactly), and the largest
    /// difference.
    mutating func add(_ m: UnsafeBufferPointer<Float>, _ r: UnsafeBufferPointer<Float>) {
        cosine.add(cosineSimilarity(m, r))
        var s = 0.0, n = 0.0
        for i in 0..<m.count {
            let d = m[i] - r[i]
            s += Double(r[i]) * Double(r[i])
            n += Double(d) * Double(d)
            let ad = abs(d)
            if ad.isNaN || ad > maxAbsDiff { maxAbsDiff = ad }
        }
        signal.add(s)
        noise.add(n)
    }

    /// Adds another part's totals.
    mutating func merge(_ other: AgreementTotals) {
        cosine.add(other.cosine)
        signal.add(other.signal)
        noise.add(other.noise)
        maxAbsDiff = largerDifference(maxAbsDiff, other.maxAbsDiff)
    }
}

/// The larger of two largest differences, NaN when either is (as the running maximum gives).
func largerDifference(_ a: Float, _ b: Float) -> Float {
    if a.isNaN || b.isNaN { return .nan }
    return max(a, b)
}
