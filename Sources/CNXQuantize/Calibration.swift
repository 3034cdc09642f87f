import CNXGraph
import CNXRuntime
import Foundation

/// How the clipping range of an activation is chosen from calibration statistics.
public enum CalibrationMethod: String, CaseIterable, Sendable {
    /// The observed minimum and maximum: no clipping, coarsest steps.
    case minmax
    /// The 0.01 and 99.99 percentiles (`percentile` option): clips rare outliers.
    case percentile
    /// The range whose 8-bit histogram is closest (Kullback–Leibler) to the observed one.
    case entropy
    /// The range that minimises the expected squared error of the quantized activation: the
    /// rounding error (step² / 12) inside the range plus the clipping error outside it, over the
    /// observed histogram.
    case mse
}

/// One quantized activation: the input of pointwise layer `layer` (1 or 2) of block node `node`.
public struct LayerKey: Hashable, Comparable, Sendable {
    public let node: Int
    public let layer: Int
    public static func < (a: LayerKey, b: LayerKey) -> Bool { (a.node, a.layer) < (b.node, b.layer) }
}

/// The u8 quantization of an activation: value = (q - zero) * scale.
public struct ActivationQuantization: Sendable {
    public let scale: Float
    public let zero: Int32
    public let low: Float
    public let high: Float

    /// The affine u8 grid over [low, high] widened to contain 0, so that 0 is exact.
    public init(low: Float, high: Float) {
        let lo = min(low, 0), hi = max(high, 0)
        let span = max(hi - lo, 1e-8)
        scale = span / 255
        zero = Int32(max(0, min(255, (-lo / scale).rounded())))
        self.low = lo
        self.high = hi
    }
}

/// Collects, per activation, first the range and then a histogram over it; thread-safe.
final class Statistics: ActivationObserver, @unchecked Sendable {
    static let bins = 2048
    private let lock = NSLock()
    var ranges: [LayerKey: (Float, Float)] = [:]
    var histograms: [LayerKey: [Double]] = [:]
    var collectingHistograms = false

    func observe(node: Int, layer: Int, values: UnsafeBufferPointer<Float>) {
        let key = LayerKey(node: node, layer: layer)
        if !collectingHistograms {
            var lo = Float.infinity, hi = -Float.infinity
            for v in values where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
            lock.lock()
            let old = ranges[key] ?? (Float.infinity, -Float.infinity)
            ranges[key] = (min(old.0, lo), max(old.1, hi))
            lock.unlock()
            return
        }
        guard let (lo, hi) = ranges[key], hi > lo else { return }
        var local = [Double](repeating: 0, count: Self.bins)
        let scale = Float(Self.bins) / (hi - lo)
        for v in values where v.isFinite {
            let b = Int((v - lo) * scale)
            local[max(0, min(Self.bins - 1, b))] += 1
        }
        lock.lock()
        var h = histograms[key] ?? [Double](repeating: 0, count: Self.bins)
        for i in 0..<Self.bins { h[i] += local[i] }
        histograms[key] = h
        lock.unlock()
    }

    /// The clipping range of `key` under `method`.
    func range(_ key: LayerKey, method: CalibrationMethod, percentile: Double) -> (Float, Float) {
        guard let (lo, hi) = ranges[key] else { return (0, 1) }
        guard method != .minmax, let h = histograms[key], hi > lo else { return (lo, hi) }
        let total = h.reduce(0, +)
        let width = (hi - lo) / Float(Self.bins)
        func edge(_ bin: Int) -> Float { lo + Float(bin) * width }
        // Bin index below which `fraction` of the mass lies.
        func quantileBin(_ fraction: Double) -> Int {
            var acc = 0.0
            for (i, c) in h.enumerated() {
                acc += c
                if acc >= fraction * total { return i }
            }
            return Self.bins - 1
        }
        if method == .percentile {
            let tail = (100 - percentile) / 100
            return (edge(quantileBin(tail)), edge(quantileBin(1 - tail) + 1))
        }
        if method == .mse {
            return mseRange(h, lo: lo, width: width)
        }
        // Entropy: among ranges cut at symmetric tail fractions, the one whose 256-level
        // quantization of the (clipped) histogram loses the least information.
        var best = (lo, hi), bestScore = Double.infinity
        for tail in [0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3] {
            let a = tail == 0 ? 0 : quantileBin(tail), b = tail == 0 ? Self.bins - 1 : quantileBin(1 - tail)
            guard b > a else { continue }
            let score = divergence(h, from: a, to: b)
            if score < bestScore { bestScore = score; best = (edge(a), edge(b + 1)) }
        }
        return best
    }

    /// The [a, b] (cut at bin edges, each side independently) minimising
    /// sum over bins of count * e², e² = step² / 12 inside (step = (b - a) / 255, the range
    /// widened to contain 0 as the quantizer does) and the squared distance to the nearer end
    /// outside. The cuts are searched among 64 candidates per side, from the whole range inwards
    /// to the 10% tails, by quantile.
    private func mseRange(_ h: [Double], lo: Float, width: Float) -> (Float, Float) {
        let bins = h.count
        let total = h.reduce(0, +)
        guard total > 0 else { return (lo, lo + width * Float(bins)) }
        var prefix = [Double](repeating: 0, count: bins + 1)
        for i in 0..<bins { prefix[i + 1] = prefix[i] + h[i] }
        // Candidate cut bins: quantiles from 0 (the whole range) to 10%, geometrically spaced.
        func cuts(fromTop: Bool) -> [Int] {
            var result: Set<Int> = [fromTop ? bins : 0]
            for k in 0..<63 {
                let fraction = 0.1 * pow(1e-5 / 0.1, Double(k) / 62)
                let target = fraction * total
                if fromTop {
                    var i = bins
                    while i > 0 && total - prefix[i - 1] <= target { i -= 1 }
                    result.insert(i)
                } else {
                    var i = 0
                    while i < bins && prefix[i + 1] <= target { i += 1 }
                    result.insert(i)
                }
            }
            return result.sorted()
        }
        func center(_ i: Int) -> Double { Double(lo) + (Double(i) + 0.5) * Double(width) }
        var best = (lo, lo + width * Float(bins)), bestError = Double.infinity
        for a in cuts(fromTop: false) {
            for b in cuts(fromTop: true) where b > a {
                let low = min(Double(lo) + Double(a) * Double(width), 0), high = max(Double(lo) + Double(b) * Double(width), 0)
                let step = (high - low) / 255
                var error = (prefix[b] - prefix[a]) * step * step / 12
                for i in 0..<a where h[i] > 0 { error += h[i] * (low - center(i)) * (low - center(i)) }
                for i in b..<bins where h[i] > 0 { error += h[i] * (center(i) - high) * (center(i) - high) }
                if error < bestError { bestError = error; best = (Float(low), Float(high)) }
            }
        }
        return best
    }

    /// KL(P || Q): P is the histogram clipped to bins [a, b] (outside mass folded into the edge
    /// bins), Q is P requantized onto 256 levels (each level's mass spread evenly over the
    /// non-empty bins it covers).
    private func divergence(_ h: [Double], from a: Int, to b: Int) -> Double {
        var p = Array(h[a...b])
        p[0] += h[..<a].reduce(0, +)
        p[p.count - 1] += h[(b + 1)...].reduce(0, +)
        let n = p.count, levels = 256
        var q = [Double](repeating: 0, count: n)
        for l in 0..<levels {
            let s = l * n / levels, e = max(s + 1, (l + 1) * n / levels)
            guard s < n else { break }
            let range = s..<min(e, n)
            let mass = range.reduce(0.0) { $0 + p[$1] }
            let nonEmpty = range.filter { p[$0] > 0 }.count
            guard nonEmpty > 0 else { continue }
            for i in range where p[i] > 0 { q[i] = mass / Double(nonEmpty) }
        }
        let total = p.reduce(0, +)
        var kl = 0.0
        for i in 0..<n where p[i] > 0 {
            let pi = p[i] / total, qi = max(q[i] / total, 1e-12)
            kl += pi * log(pi / qi)
        }
        return kl
    }
}

/// Runs a float32 model over calibration batches and returns the u8 quantization of every
/// pointwise layer's input.
public enum Calibrator {
    public static func calibrate(model: Model, samples: Tensor, batch: Int = 8, method: CalibrationMethod,
                                 percentile: Double = 99.99, progress: ((Int, Int) -> Void)? = nil) throws -> [LayerKey: ActivationQuantization] {
        guard samples.shape.count == 4, samples.shape[0] > 0 else {
            throw CNXError("calibration data must be an N x 3 x H x W batch, got \(samples.shape)")
        }
        let stats = Statistics()
        let workspace = model.makeWorkspace()
        var n = samples.shape[0]
        let per = samples.count / n
        var batch = batch
        // A model exported with a fixed batch takes exactly that many samples at a time.
        if let fixed = model.graph.inputs.first?.shape?.first?.value {
            batch = fixed
            n -= n % fixed
            guard n > 0 else { throw CNXError("the model takes batches of exactly \(fixed); the calibration data has \(samples.shape[0]) samples") }
        }
        let passes = method == .minmax ? 1 : 2
        for pass in 0..<passes {
            stats.collectingHistograms = pass == 1
            var start = 0
            while start < n {
                let count = min(batch, n - start)
                if let fixed = model.graph.inputs.first?.shape?.first?.value, count != fixed { break }
                let chunk = Tensor(zeros: .float32, shape: [count] + Array(samples.shape.dropFirst()))
                chunk.floatPointer.update(from: samples.floatPointer + start * per, count: count * per)
                _ = try model.predictAll([model.inputName: chunk], workspace: workspace, observer: stats)
                start += count
                progress?(pass * n + start, passes * n)
            }
        }
        var result: [LayerKey: ActivationQuantization] = [:]
        for key in stats.ranges.keys {
            let (lo, hi) = stats.range(key, method: method, percentile: percentile)
            result[key] = ActivationQuantization(low: lo, high: hi)
        }
        return result
    }
}
