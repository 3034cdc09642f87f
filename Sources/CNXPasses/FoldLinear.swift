import CNXGraph

/// Turns every pointwise layer into one `cnx.Linear` (x[..., K] · W[K, N] + b):
///
/// - `MatMul(x, W)` with a constant 2-D W, and the bias `Add` that follows it when the bias is a
///   constant vector of N values;
/// - `Gemm(x, W, b)` with a constant W (transB honoured), alpha = beta = 1, transA = 0;
/// - a 1x1 convolution with stride 1, no padding and one group (timm's `conv_mlp`), which is a
///   Linear on the channel axis: Transpose to NHWC, Linear, Transpose back; the transpose pass
///   then cancels the permutes between neighbours.
public struct FoldLinear: RepeatedRewrite {
    public let name = "fold-linear"
    public let summary = "MatMul+Add, Gemm and 1x1 Conv with constant weights -> cnx.Linear"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, node) in g.nodes.enumerated() {
            switch node.op {
            case .matMul:
                guard let w = index.constant(node.inputs[1]), w.dtype == .float32, w.shape.count == 2,
                    index.constant(node.inputs[0]) == nil
                else { continue }
                var removed: Set<Int> = [i]
                var inputs = [node.inputs[0], node.inputs[1]]
                var out = node.outputs[0]
                if let add = index.soleConsumer(out, .add), let b = index.other(add.node, than: out),
                    let bias = index.constant(b), bias.vector(of: w.shape[1]) != nil, bias.shape.last == w.shape[1]
                {
                    let bName = g.freshName("\(add.node.outputs[0]).bias")
                    g.initializers[bName] = Tensor(floats: bias.floats, shape: [w.shape[1]])
                    inputs.append(bName)
                    removed.insert(add.index)
                    out = add.node.outputs[0]
                }
                g.replace(removed, with: [Node(name: node.name, op: .linear, inputs: inputs, outputs: [out])])
                return true
            case .gemm:
                guard node.inputs.count >= 2, let w = index.constant(node.inputs[1]), w.dtype == .float32, w.shape.count == 2,
                    (node.int("transA") ?? 0) == 0, (node.float("alpha") ?? 1) == 1, (node.float("beta") ?? 1) == 1
                else { continue }
                let transB = (node.int("transB") ?? 0) != 0
                let n = transB ? w.shape[0] : w.shape[1]
                let wName = g.freshName("\(node.outputs[0]).weight")
                g.initializers[wName] = transB ? transpose2D(w) : w
                var inputs = [node.inputs[0], wName]
                if node.inputs.count > 2, !node.inputs[2].isEmpty {
                    guard let b = index.constant(node.inputs[2]), b.vector(of: n) != nil else { continue }
                    let bName = g.freshName("\(node.outputs[0]).bias")
                    g.initializers[bName] = Tensor(floats: b.floats, shape: [n])
                    inputs.append(bName)
                }
                g.replace([i], with: [Node(name: node.name, op: .linear, inputs: inputs, outputs: node.outputs)])
                return true
            case .conv:
                guard let w = index.constant(node.inputs[1]), w.dtype == .float32, w.shape.count == 4, w.shape[2] == 1, w.shape[3] == 1,
                    (node.int("group") ?? 1) == 1, (node.ints("strides") ?? [1, 1]) == [1, 1],
                    (node.ints("pads") ?? [0, 0, 0, 0]).allSatisfy({ $0 == 0 }), (node.ints("dilations") ?? [1, 1]) == [1, 1],
                    ["NOTSET", "VALID"].contains(node.string("auto_pad") ?? "NOTSET")
                else { continue }
                let (cout, cin) = (w.shape[0], w.shape[1])
                let out = node.outputs[0]
                let wName = g.freshName("\(out).weight")
                g.initializers[wName] = transpose2D(w.reshaped([cout, cin]))
                var inputs = [g.freshName("\(out).nhwc_in"), wName]
                if node.inputs.count > 2, !node.inputs[2].isEmpty {
                    guard let b = index.constant(node.inputs[2]), b.vector(of: cout) != nil else { continue }
                    let bName = g.freshName("\(out).bias")
                    g.initializers[bName] = Tensor(floats: b.floats, shape: [cout])
                    inputs.append(bName)
                }
                let linearOut = g.freshName("\(out).nhwc")
                g.replace(
                    [i],
                    with: [
                        toNHWC(node.name, node.inputs[0], inputs[0]),
                        Node(name: node.name, op: .linear, inputs: inputs, outputs: [linearOut]),
                        toNCHW(node.name, linearOut, out),
                    ])
                return true
            default:
                continue
            }
        }
        return false
    }
}

/// The transpose of a 2-D float tensor, in new memory.
func transpose2D(_ t: Tensor) -> Tensor {
    let (r, c) = (t.shape[0], t.shape[1])
    let out = Tensor(zeros: .float32, shape: [c, r])
    t.withUnsafeFloats { src in
        out.withUnsafeMutableFloats { dst in
            for i in 0..<r { for j in 0..<c { dst[j * r + i] = src[i * c + j] } }
        }
    }
    return out
}
