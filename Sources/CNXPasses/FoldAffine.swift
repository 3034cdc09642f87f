import CNXGraph

/// Folds a norm's scale and shift (LayerNorm; RMSNorm and SimpleNorm have a scale only) into
/// the pointwise layer that reads it: with y = W^T (gamma ⊙ n + beta) + b,
/// W' = diag(gamma) · W and b' = W^T beta + b (W is stored [K, N], so gamma scales W's rows).
/// The norm keeps a unit scale.
public struct FoldLayerNormAffine: RepeatedRewrite {
    public let name = "fold-layernorm-affine"
    public let summary = "norm scale and shift (LayerNorm, RMSNorm, SimpleNorm) -> the following Linear's weight and bias"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, ln) in g.nodes.enumerated() where LastAxisNorm.kinds[ln.op] != nil {
            // rank 0: only axis -1 is accepted, whatever the rank.
            guard let linear = index.soleConsumer(ln.outputs[0], .linear), linear.node.inputs[0] == ln.outputs[0],
                let w = index.constant(linear.node.inputs[1]), w.shape.count == 2,
                let norm = index.lastAxisNorm((i, ln), channels: w.shape[0], rank: 0), !norm.isPlain(index),
                let gamma = index.constant(norm.scale)?.vector(of: w.shape[0])
            else { continue }
            let beta = norm.shift.flatMap { index.constant($0)?.vector(of: w.shape[0]) } ?? [Float](repeating: 0, count: w.shape[0])
            let n = w.shape[1]
            let bias = linear.node.inputs.count > 2 ? index.constant(linear.node.inputs[2])?.floats ?? [] : [Float](repeating: 0, count: n)
            guard bias.count == n else { continue }
            let (newW, newBias) = foldAffineIntoLinear(weight: w, bias: bias, gamma: gamma, beta: beta)
            let out = linear.node.outputs[0]
            let wName = g.freshName("\(out).weight_ln"), bName = g.freshName("\(out).bias_ln"),
                oneName = g.freshName("\(ln.outputs[0]).unit_scale")
            var newLN = ln
            newLN.inputs = [ln.inputs[0], oneName]
            var newLinear = linear.node
            newLinear.inputs = [ln.outputs[0], wName, bName]
            g.replace(
                [i, linear.index], with: [newLN, newLinear],
                adding: [
                    wName: newW, bName: newBias, oneName: Tensor(floats: [Float](repeating: 1, count: w.shape[0]), shape: [w.shape[0]]),
                ])
            return true
        }
        return false
    }
}

/// Folds a per-channel scale that follows a pointwise layer (ConvNeXt's layer scale) into it:
/// gamma ⊙ (W^T x + b) = (W · diag(gamma))^T x + gamma ⊙ b, so W2' scales W's columns.
public struct FoldLayerScale: RepeatedRewrite {
    public let name = "fold-layer-scale"
    public let summary = "per-channel Mul after a Linear (layer scale) -> the Linear's weight and bias"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, linear) in g.nodes.enumerated() where linear.op == .linear && linear.string("activation") == nil {
            guard let mul = index.soleConsumer(linear.outputs[0], .mul), let c = index.other(mul.node, than: linear.outputs[0]),
                let w = index.constant(linear.inputs[1]), w.shape.count == 2,
                let scaleTensor = index.constant(c), scaleTensor.shape.last == w.shape[1],
                let scale = scaleTensor.vector(of: w.shape[1])
            else { continue }
            let (k, n) = (w.shape[0], w.shape[1])
            let bias = linear.inputs.count > 2 ? index.constant(linear.inputs[2])?.floats : nil
            let newW = Tensor(zeros: .float32, shape: [k, n])
            newW.withUnsafeMutableFloats { dst in
                w.withUnsafeFloats { src in
                    for r in 0..<k { for col in 0..<n { dst[r * n + col] = src[r * n + col] * scale[col] } }
                }
            }
            let out = mul.node.outputs[0]
            let wName = g.freshName("\(out).weight_scaled"), bName = g.freshName("\(out).bias_scaled")
            var tensors = [wName: newW]
            var inputs = [linear.inputs[0], wName]
            if let bias {
                guard bias.count == n else { continue }
                tensors[bName] = Tensor(floats: zip(bias, scale).map { $0 * $1 }, shape: [n])
                inputs.append(bName)
            }
            g.replace(
                [i, mul.index], with: [Node(name: linear.name, op: .linear, inputs: inputs, outputs: [out], attributes: linear.attributes)],
                adding: tensors)
            return true
        }
        return false
    }
}

/// The folding arithmetic for a per-channel affine y = gamma ⊙ n + beta read by a Linear with
/// weight W [K, N] and bias b: W' = diag(gamma) · W, b' = b + W^T beta (accumulated in double).
func foldAffineIntoLinear(weight w: Tensor, bias: [Float], gamma: [Float], beta: [Float]) -> (Tensor, Tensor) {
    let (k, n) = (w.shape[0], w.shape[1])
    let newW = Tensor(zeros: .float32, shape: [k, n])
    var b = bias
    w.withUnsafeFloats { src in
        newW.withUnsafeMutableFloats { dst in
            for r in 0..<k { for c in 0..<n { dst[r * n + c] = gamma[r] * src[r * n + c] } }
        }
        for c in 0..<n {
            var acc = Double(b[c])
            for r in 0..<k { acc += Double(beta[r]) * Double(src[r * n + c]) }
            b[c] = Float(acc)
        }
    }
    return (newW, Tensor(floats: b, shape: [n]))
}
