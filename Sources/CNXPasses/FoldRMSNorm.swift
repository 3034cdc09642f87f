import CNXGraph

/// Folds the normalisations that scale x without centring it into one node over the last axis:
///
/// - RMS norm (timm's RmsNorm and RmsNorm2d): `x * rsqrt(mean(x²) + eps) * gamma`
///   -> `RMSNormalization(x, gamma)`;
/// - timm's SimpleNorm (SimpleNorm and SimpleNorm2d): `x * rsqrt(var(x) + eps) * gamma` with the
///   variance written out as `mean((x - mean x)²)` times C / (C - 1) (torch.var is unbiased)
///   -> `cnx.SimpleNorm(x, gamma)`, whose variance is the unbiased one.
///
/// Either over the last axis, or over axis 1 of an NCHW tensor (then Transpose, the norm,
/// Transpose back, for the transpose pass to cancel). The reciprocal square root may be written
/// `Reciprocal(Sqrt)`, `Div(1, Sqrt)` or a division by the `Sqrt`; the statistic may be scaled
/// by constants and re-shaped to the kept-dimension shape (the dynamo exporter reduces without
/// keepdims, then reshapes). A factor f on the statistic s (relative to the op's own: mean(x²)
/// for RMS, the unbiased variance for SimpleNorm) folds exactly:
/// x / sqrt(f s + eps) * gamma = x / sqrt(s + eps / f) * (gamma / sqrt f); f is 1 in every export
/// seen (then epsilon and gamma are kept as they are).
/// The scale `gamma` is optional (taken as 1); epsilon must be a constant; every intermediate
/// must have no other reader.
public struct FoldRMSNorm: RepeatedRewrite {
    public let name = "fold-rmsnorm"
    public let summary = "RMS and SimpleNorm chains (last axis, or channels-first over axis 1) -> RMSNormalization / cnx.SimpleNorm"

    public init() {}

    /// The reduced axes of a Reduce node, normalised to `rank`.
    static func axes(_ node: Node, _ index: GraphIndex, rank: Int) -> [Int]? {
        let raw: [Int]?
        if node.inputs.count > 1 {
            guard let t = index.constant(node.inputs[1]), t.dtype == .int64 else { return nil }
            raw = t.int64s.map { Int($0) }
        } else {
            raw = node.ints("axes")
        }
        return raw.map { $0.map { $0 < 0 ? $0 + rank : $0 } }
    }

    /// True when every reader of `value` is the node at `node` (a Mul may read it twice).
    private func onlyReader(_ value: String, is node: Int, _ index: GraphIndex) -> Bool {
        guard !index.graphOutputs.contains(value), let c = index.consumers[value], !c.isEmpty else { return false }
        return c.allSatisfy { $0 == node }
    }

    /// `value` = square of some tensor: Pow(t, 2) or Mul(t, t). Returns t and the node.
    private func square(_ value: String, _ index: GraphIndex) -> (base: String, node: Int)? {
        guard let p = index.producer(value) else { return nil }
        if p.node.op == .pow, close(index.scalar(p.node.inputs[1]), 2) { return (p.node.inputs[0], p.index) }
        if p.node.op == .mul, p.node.inputs.count == 2, p.node.inputs[0] == p.node.inputs[1] { return (p.node.inputs[0], p.index) }
        return nil
    }

    private struct Match {
        var x: String
        var axis: Int
        var simple: Bool
        var eps: Float
        var factor: Double
        var nodes: Set<Int>
        var output: String
        var gamma: Tensor?
    }

    /// Walks back from `value` (what epsilon is added to) through constant scalings and
    /// reshapes to the ReduceMean of the statistic; returns the match without the numerator.
    private func statistic(_ value: String, _ index: GraphIndex, _ facts: [String: ValueFacts]) -> (
        mean: (index: Int, node: Node), factor: Double, nodes: Set<Int>
    )? {
        var cursor = value, factor = 1.0, nodes: Set<Int> = []
        for _ in 0..<6 {
            guard let p = index.producer(cursor) else { return nil }
            switch p.node.op {
            case .reduceMean:
                return (p, factor, nodes)
            case .mul, .div:
                guard let (v, c) = index.splitConstant(p.node), let k = index.scalar(c), k.isFinite, k > 0 else { return nil }
                if p.node.op == .div { guard p.node.inputs[1] == c else { return nil } }
                factor *= p.node.op == .mul ? Double(k) : 1 / Double(k)
                cursor = v
            case .reshape, .unsqueeze:
                cursor = p.node.inputs[0]
            default:
                return nil
            }
            guard onlyReader(cursor, is: p.index, index) else { return nil }
            nodes.insert(p.index)
        }
        return nil
    }

    private func match(_ anchor: (index: Int, node: Node), _ index: GraphIndex, _ facts: [String: ValueFacts]) -> Match? {
        // y = x * r with r = 1 / sqrt(a), or y = x / sqrt(a).
        let node = anchor.node
        guard node.inputs.count == 2 else { return nil }
        var candidates: [(x: String, sqrt: (index: Int, node: Node), extra: [Int])] = []
        if node.op == .div, let s = index.producer(node.inputs[1], .sqrt) {
            candidates.append((node.inputs[0], s, []))
        } else if node.op == .mul {
            for slot in 0..<2 {
                let r = node.inputs[slot]
                guard let p = index.producer(r), onlyReader(r, is: anchor.index, index) else { continue }
                if p.node.op == .reciprocal, let s = index.producer(p.node.inputs[0], .sqrt) {
                    candidates.append((node.inputs[1 - slot], s, [p.index]))
                } else if p.node.op == .div, close(index.scalar(p.node.inputs[0]), 1), index.constant(p.node.inputs[0]) != nil,
                    let s = index.producer(p.node.inputs[1], .sqrt)
                {
                    candidates.append((node.inputs[1 - slot], s, [p.index]))
                }
            }
        }
        for (x, sqrt, extra) in candidates {
            guard let shape = facts[x]?.shape, let rank = Optional(shape.count), rank >= 2,
                onlyReader(sqrt.node.outputs[0], is: extra.first ?? anchor.index, index),
                let addEps = index.producer(sqrt.node.inputs[0], .add), onlyReader(addEps.node.outputs[0], is: sqrt.index, index),
                let (v, epsName) = index.splitConstant(addEps.node), let eps = index.scalar(epsName), eps >= 0, eps < 1,
                onlyReader(v, is: addEps.index, index),
                let stat = statistic(v, index, facts),
                let ax = Self.axes(stat.mean.node, index, rank: rank), ax.count == 1
            else { continue }
            let axis = ax[0]
            guard axis == rank - 1 || (axis == 1 && rank == 4) else { continue }
            // The statistic, once re-shaped, has x's shape with the axis kept as 1.
            var kept = shape
            kept[axis] = .fixed(1)
            guard facts[v]?.shape == kept, let sq = square(stat.mean.node.inputs[0], index),
                onlyReader(stat.mean.node.inputs[0], is: stat.mean.index, index)
            else { continue }
            var nodes: Set<Int> = [anchor.index, sqrt.index, addEps.index, stat.mean.index, sq.node]
            var factor = stat.factor
            nodes.formUnion(extra)
            nodes.formUnion(stat.nodes)
            var simple = false
            if sq.base != x {
                // SimpleNorm: the square of d = x - mean(x).
                guard let sub = index.producer(sq.base, .sub), sub.node.inputs[0] == x, onlyReader(sq.base, is: sq.node, index),
                    let mean = index.producer(sub.node.inputs[1], .reduceMean), mean.node.inputs[0] == x,
                    onlyReader(mean.node.outputs[0], is: sub.index, index),
                    Self.axes(mean.node, index, rank: rank) == [axis], (mean.node.int("keepdims") ?? 1) == 1
                else { continue }
                nodes.formUnion([sub.index, mean.index])
                simple = true
                // Relative to the unbiased variance the op computes.
                guard let n = shape[axis].value, n > 1 else { continue }
                factor *= Double(n - 1) / Double(n)
            }
            var result = Match(
                x: x, axis: axis, simple: simple, eps: eps, factor: factor, nodes: nodes, output: node.outputs[0], gamma: nil)
            // The optional per-channel scale that follows.
            if let channels = shape[axis].value, let mul = index.soleConsumer(node.outputs[0], .mul),
                let g = index.other(mul.node, than: node.outputs[0]), let t = index.constant(g), t.dtype == .float32, t.count == channels
            {
                let fits =
                    axis == rank - 1
                    ? t.shape.last == channels && t.shape.dropLast().allSatisfy { $0 == 1 }
                    : t.shape == [channels, 1, 1] || t.shape == [1, channels, 1, 1]
                if fits {
                    result.gamma = t
                    result.nodes.insert(mul.index)
                    result.output = mul.node.outputs[0]
                }
            }
            return result
        }
        return nil
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, node) in g.nodes.enumerated() where node.op == .mul || node.op == .div {
            guard let m = match((i, node), index, facts), let shape = facts[m.x]?.shape, let channels = shape[m.axis].value else {
                continue
            }
            // Float rounding of the exporters' constants (8 * (1 / 7) for 8/7): a factor this
            // close to 1 is 1.
            let factor = abs(m.factor - 1) < 1e-6 ? 1 : m.factor
            guard factor > 0, factor.isFinite else { continue }
            let gamma = (m.gamma?.floats ?? [Float](repeating: 1, count: channels)).map { Float(Double($0) / factor.squareRoot()) }
            let scale = g.freshName("\(m.output).norm_scale")
            let op: OpType = m.simple ? .simpleNorm : .rmsNormalization
            var attrs: [String: Attribute] = ["epsilon": .float(Float(Double(m.eps) / factor))]
            if !m.simple { attrs["axis"] = .int(-1) }
            let tensors = [scale: Tensor(floats: gamma, shape: [channels])]
            g.replace(
                m.nodes, withChannelOp: op, named: node.name, m.x, [scale], attributes: attrs, output: m.output,
                channelsFirst: m.axis == 1 && shape.count == 4, adding: tensors)
            return true
        }
        return false
    }
}
