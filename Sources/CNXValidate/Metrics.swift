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

/// Signal-to-quantisation-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - x)^2); infinite
/// when x equals ref.
public func sqnr(signal: Double, noise: Double) -> Double {
    if noise == 0 { return signal == 0 ? 0 : .infinity }
    return 10 * log10(signal / noise)
}

/// The figures `validate` reports, gathered batch by batch so that no logits are kept.
public struct MetricsAccumulator: Sendable {
    public private(set) var samples = 0
    public private(set) var classes = 0
    /// Samples whose top-1 class agrees between model and reference.
    public private(set) var top1Agreements = 0
    /// Sum over samples of |top-5(model) ∩ top-5(reference)| / 5 (k = min(5, classes)).
    public private(set) var top5OverlapSum = 0.0
    public private(set) var cosineSum = 0.0
    public private(set) var signal = 0.0
    public private(set) var noise = 0.0
    public private(set) var maxAbsDiff: Float = 0
    // With labels:
    public private(set) var labelled = 0
    public private(set) var modelTop1 = 0
    public private(set) var referenceTop1 = 0
    public private(set) var modelTop5 = 0
    public private(set) var referenceTop5 = 0
    /// Per class id: samples, correct by the model, correct by the reference.
    public private(set) var perClass: [Int: (samples: Int, model: Int, reference: Int)] = [:]

    public init() {}

    /// k of top-k overlap and top-k accuracy: 5, or the class count when smaller.
    public var k: Int { min(5, classes) }

    /// Adds a batch: logits [n, classes] of the model and the reference (row-major), and the
    /// samples' labels when known.
    public mutating func add(model: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>, classes c: Int, labels: ArraySlice<Int>?) {
        precondition(model.count == reference.count && c > 0 && model.count % c == 0)
        classes = c
        let n = model.count / c
        let k = min(5, c)
        for s in 0..<n {
            let m = UnsafeBufferPointer(rebasing: model[s * c..<(s + 1) * c])
            let r = UnsafeBufferPointer(rebasing: reference[s * c..<(s + 1) * c])
            let mt = topK(m, k), rt = topK(r, k)
            if mt[0] == rt[0] { top1Agreements += 1 }
            top5OverlapSum += Double(Set(mt).intersection(rt).count) / Double(k)
            cosineSum += cosineSimilarity(m, r)
            for i in 0..<c {
                let d = m[i] - r[i]
                signal += Double(r[i]) * Double(r[i])
                noise += Double(d) * Double(d)
                let ad = abs(d)
                if ad.isNaN || ad > maxAbsDiff { maxAbsDiff = ad }
            }
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
    public var top5Overlap: Double { samples > 0 ? top5OverlapSum / Double(samples) : 0 }
    public var meanCosine: Double { samples > 0 ? cosineSum / Double(samples) : 0 }
    public var sqnrDB: Double { sqnr(signal: signal, noise: noise) }
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
            ClassAccuracy(id: id, samples: e.samples, model: Double(e.model) / Double(e.samples),
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
public struct OutputMetrics: Sendable {
    /// The graph output's name.
    public var name: String
    /// The output's shape for one sample (without the batch dimension).
    public var shape: [Int]
    public private(set) var samples = 0
    public private(set) var cosineSum = 0.0
    public private(set) var signal = 0.0
    public private(set) var noise = 0.0
    public private(set) var maxAbsDiff: Float = 0

    public init(name: String, shape: [Int] = []) {
        self.name = name
        self.shape = shape
    }

    /// Adds a batch of `samples` samples: the model's and the reference's values, row-major, each
    /// sample's values contiguous.
    public mutating func add(model: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>, samples n: Int) {
        precondition(model.count == reference.count && n > 0 && model.count % n == 0)
        let per = model.count / n
        for s in 0..<n {
            let m = UnsafeBufferPointer(rebasing: model[s * per..<(s + 1) * per])
            let r = UnsafeBufferPointer(rebasing: reference[s * per..<(s + 1) * per])
            cosineSum += cosineSimilarity(m, r)
            for i in 0..<per {
                let d = m[i] - r[i]
                signal += Double(r[i]) * Double(r[i])
                noise += Double(d) * Double(d)
                let ad = abs(d)
                if ad.isNaN || ad > maxAbsDiff { maxAbsDiff = ad }
            }
        }
        samples += n
    }

    public mutating func add(model: [Float], reference: [Float], samples n: Int) {
        model.withUnsafeBufferPointer { m in
            reference.withUnsafeBufferPointer { r in add(model: m, reference: r, samples: n) }
        }
    }

    public var meanCosine: Double { samples > 0 ? cosineSum / Double(samples) : 0 }
    public var sqnrDB: Double { sqnr(signal: signal, noise: noise) }
}
