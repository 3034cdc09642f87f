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

/// The u8 quantization of an activation: value = (q - zero) * scale, of the activation divided
/// per channel by `channelScales` when there are any.
public struct ActivationQuantization: Sendable {
    public let scale: Float
    public let zero: Int32
    public let low: Float
    public let high: Float
    /// Per-input-channel equalization (one per row of the layer's weight), or nil.
    public var channelScales: [Float]?

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

/// Collects, per activation, the largest magnitude of each input channel (for equalization),
/// the range and then a histogram over it; thread-safe. In the range and histogram phases an
/// activation with `divisors` is seen divided by them, channel by channel, as the runtime will
/// quantize it.
final class Statistics: ActivationObserver, @unchecked Sendable {
    enum Phase { case channels, ranges, histograms }
    static let bins = 2048
    private let lock = NSLock()
    var phase = Phase.ranges
    /// Input channels of each activation whose channel magnitudes are wanted.
    let widths: [LayerKey: Int]
    /// Per input channel: minimum, maximum, sum of squares; and how many rows were seen.
    var channelStats: [LayerKey: ChannelStatistics] = [:]
    var divisors: [LayerKey: [Float]] = [:]
    var ranges: [LayerKey: (Float, Float)] = [:]
    var histograms: [LayerKey: [Double]] = [:]

    init(widths: [LayerKey: Int] = [:]) { self.widths = widths }

    func observe(node: Int, layer: Int, values: UnsafeBufferPointer<Float>) {
        let key = LayerKey(node: node, layer: layer)
        if phase == .channels {
            guard let k = widths[key], k > 0 else { return }
            var local = ChannelStatistics(channels: k)
            local.add(values)
            lock.lock()
            if var m = channelStats[key] { m.merge(local); channelStats[key] = m } else { channelStats[key] = local }
            lock.unlock()
            return
        }
        let d = divisors[key]
        func value(_ i: Int) -> Float { d.map { values[i] / $0[i % $0.count] } ?? values[i] }
        if phase == .ranges {
            var lo = Float.infinity, hi = -Float.infinity
            for i in 0..<values.count { let v = value(i); if v.isFinite { lo = min(lo, v); hi = max(hi, v) } }
            lock.lock()
            let old = ranges[key] ?? (Float.infinity, -Float.infinity)
            ranges[key] = (min(old.0, lo), max(old.1, hi))
            lock.unlock()
            return
        }
        guard let (lo, hi) = ranges[key], hi > lo else { return }
        var local = [Double](repeating: 0, count: Self.bins)
        let scale = Float(Self.bins) / (hi - lo)
        for i in 0..<values.count {
            let v = value(i)
            guard v.isFinite else { continue }
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
    /// `equalize`: the layers whose input channels may be rescaled (Int8Lowering.equalizable),
    /// with the weight each one multiplies.
    public static func calibrate(
        model: Model, samples: Tensor, batch: Int = 8, method: CalibrationMethod,
        percentile: Double = 99.99, equalize: [LayerKey: Equalizable] = [:],
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> [LayerKey: ActivationQuantization] {
        guard samples.shape.count == 4, samples.shape[0] > 0 else {
            throw CNXError("calibration data must be an N x 3 x H x W batch, got \(samples.shape)")
        }
        let stats = Statistics(widths: equalize.mapValues { $0.weight.shape[0] })
        let workspace = model.makeWorkspace()
        var n = samples.shape[0]
        let per = samples.count / n
        var batch = batch
        // A model exported with a fixed batch takes exactly that many samples at a time.
        if let fixed = model.graph.inputs.first?.shape?.first?.value {
            batch = fixed
            n -= n % fixed
            guard n > 0 else {
                throw CNXError("the model takes batches of exactly \(fixed); the calibration data has \(samples.shape[0]) samples")
            }
        }
        var phases: [Statistics.Phase] = equalize.isEmpty ? [] : [.channels]
        phases += method == .minmax ? [.ranges] : [.ranges, .histograms]
        for (p, phase) in phases.enumerated() {
            stats.phase = phase
            if phase == .ranges {
                for (key, e) in equalize {
                    if let m = stats.channelStats[key], let scales = e.scales(m) { stats.divisors[key] = scales }
                }
            }
            var start = 0
            while start < n {
                let count = min(batch, n - start)
                if let fixed = model.graph.inputs.first?.shape?.first?.value, count != fixed { break }
                let chunk = Tensor(zeros: .float32, shape: [count] + Array(samples.shape.dropFirst()))
                samples.withUnsafeFloats { src in
                    chunk.withUnsafeMutableFloats { $0.baseAddress!.update(from: src.baseAddress! + start * per, count: count * per) }
                }
                _ = try model.predictAll([model.inputName: chunk], workspace: workspace, observer: stats)
                start += count
                progress?(p * n + start, phases.count * n)
            }
        }
        var result: [LayerKey: ActivationQuantization] = [:]
        for key in stats.ranges.keys {
            let (lo, hi) = stats.range(key, method: method, percentile: percentile)
            var q = ActivationQuantization(low: lo, high: hi)
            q.channelScales = stats.divisors[key]
            result[key] = q
        }
        return result
    }
}

/// Per-channel statistics of a layer's input: rows of `channels` values.
struct ChannelStatistics {
    var low: [Float], high: [Float], squares: [Double]
    var rows = 0

    init(channels k: Int) {
        low = [Float](repeating: .infinity, count: k)
        high = [Float](repeating: -.infinity, count: k)
        squares = [Double](repeating: 0, count: k)
    }

    mutating func add(_ values: UnsafeBufferPointer<Float>) {
        let k = low.count
        for (i, v) in values.enumerated() where v.isFinite {
            let c = i % k
            low[c] = min(low[c], v)
            high[c] = max(high[c], v)
            squares[c] += Double(v) * Double(v)
        }
        rows += values.count / k
    }

    mutating func merge(_ o: ChannelStatistics) {
        for c in low.indices {
            low[c] = min(low[c], o.low[c])
            high[c] = max(high[c], o.high[c])
            squares[c] += o.squares[c]
        }
        rows += o.rows
    }
}

/// A layer whose input channels can be rescaled for free (the norm that makes the
/// input multiplies by the reciprocal), SmoothQuant's migration of range from the activation
/// to the weight: the input is quantized as x_c / s_c and the weight as s_c W_c,: so that one
/// per-tensor u8 grid serves channels of very different magnitude. `period` channels repeat over
/// the rows (a downsample's patch rows are (ky, kx, channel): one scale per channel).
public struct Equalizable: Sendable {
    public let weight: Tensor
    public let period: Int

    /// s_c = max|x_c|^a / max|W_c,:|^(1-a) for the migration strength a in {0, 1/4, 1/2, 3/4}
    /// (a = 0 is no equalization: nil) that gives the least expected output noise, from a model
    /// of both roundings: the u8 step of x / s over its range, times s_c W_cj, plus each output
    /// column's int8 step of s W, times x_c / s_c, summed over outputs (squared, over 12).
    func scales(_ stats: ChannelStatistics) -> [Float]? {
        let k = weight.shape[0], n = weight.shape[1]
        guard stats.low.count == k, stats.rows > 0 else { return nil }
        var xMax = [Double](repeating: 0, count: period), wMax = [Double](repeating: 0, count: period)
        var low = [Double](repeating: 0, count: period), high = [Double](repeating: 0, count: period)
        var meanSquare = [Double](repeating: 0, count: period)
        return weight.withUnsafeFloats { w -> [Float]? in
            for r in 0..<k {
                let c = r % period
                xMax[c] = max(xMax[c], Double(max(abs(stats.low[r]), abs(stats.high[r]))))
                low[c] = min(low[c], Double(stats.low[r]))
                high[c] = max(high[c], Double(stats.high[r]))
                meanSquare[c] = max(meanSquare[c], stats.squares[r] / Double(stats.rows))
                for j in 0..<n { wMax[c] = max(wMax[c], Double(abs(w[r * n + j]))) }
            }
            func noise(_ s: [Double]) -> Double {
                var lo = 0.0, hi = 0.0
                for c in 0..<period { lo = min(lo, low[c] / s[c]); hi = max(hi, high[c] / s[c]) }
                let xStep = (hi - lo) / 255
                var total = 0.0
                for j in 0..<n {
                    var colMax = 0.0, activation = 0.0, weightPart = 0.0
                    for r in 0..<k {
                        let c = r % period, v = s[c] * Double(w[r * n + j])
                        colMax = max(colMax, abs(v))
                        activation += v * v
                        weightPart += meanSquare[c] / (s[c] * s[c])
                    }
                    let wStep = colMax / 127
                    total += (xStep * xStep * activation + wStep * wStep * weightPart) / 12
                }
                return total
            }
            let none = [Double](repeating: 1, count: period)
            var best: [Double]?, bestNoise = noise(none)
            for a in [0.25, 0.5, 0.75] {
                let s = (0..<period).map { c -> Double in
                    let v = pow(xMax[c], a) / pow(wMax[c], 1 - a)
                    return v.isFinite && v > 0 ? v : 1
                }
                let e = noise(s)
                if e < bestNoise { bestNoise = e; best = s }
            }
            guard let best else { return nil }
            return (0..<k).map { Float(best[$0 % period]) }
        }
    }
}
