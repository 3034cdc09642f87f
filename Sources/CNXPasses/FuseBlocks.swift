import CNXGraph
import CNXReference

/// Fuses each ConvNeXt block, in the canonical form the earlier passes leave,
///
///     t = DepthwiseConvKxK(x)            (NCHW; groups = channels, stride 1, pad (k-1)/2, k odd)
///     u = Linear2(GRN?(Act(Linear1(Norm(Transpose_to_NHWC(t))))))
///     y = x + Transpose_to_NCHW(u)
///
/// into one channels-last `cnx.Block` between a pair of transposes, which the transpose pass
/// cancels against the neighbouring blocks'. Norm is a LayerNorm, RMSNorm or SimpleNorm (the
/// block's `norm` attribute, with its epsilon) whose affine is already folded into Linear1 (unit
/// scale, no shift); Act is GELU (erf or tanh) or SiLU (the `activation` attribute); the layer
/// scale must already be in Linear2. A chain with a second reader of any intermediate, another
/// activation, or a residual from elsewhere is left alone.
public struct FuseBlocks: RepeatedRewrite {
    public let name = "fuse-blocks"
    public let summary = "depthwise kxk -> norm -> Linear -> GELU/SiLU -> (GRN) -> Linear -> residual add -> cnx.Block"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, dw) in g.nodes.enumerated() where dw.op == .conv {
            guard let w = index.constant(dw.inputs[1]), w.dtype == .float32, w.shape.count == 4 else { continue }
            let (c, k) = (w.shape[0], w.shape[2])
            let pad = (k - 1) / 2
            guard w.shape[1] == 1, w.shape[3] == k, k % 2 == 1, (dw.int("group") ?? 1) == c, c > 1,
                (dw.ints("strides") ?? [1, 1]) == [1, 1], (dw.ints("dilations") ?? [1, 1]) == [1, 1],
                (dw.ints("pads") ?? [0, 0, 0, 0]) == [pad, pad, pad, pad], (dw.string("auto_pad") ?? "NOTSET") == "NOTSET"
            else { continue }
            let x = dw.inputs[0]
            guard let t1 = index.soleConsumer(dw.outputs[0], .transpose), t1.node.ints("perm") == [0, 2, 3, 1],
                let norm = index.lastAxisNorm(readerOf: t1.node.outputs[0], channels: c, rank: 4), norm.isPlain(index),
                let l1 = index.soleConsumer(norm.node.outputs[0], .linear), l1.node.string("activation") == nil,
                let w1 = index.constant(l1.node.inputs[1]), w1.shape.count == 2, w1.shape[0] == c,
                let act = index.soleConsumer(l1.node.outputs[0]), let activation = Activation.name(of: act.node)
            else { continue }
            let hidden = w1.shape[1]
            var cursor = act.node.outputs[0]
            var removed: Set<Int> = [i, t1.index, norm.index, l1.index, act.index]
            var grn: (gamma: String, beta: String, eps: Float)?
            if let node = index.soleConsumer(cursor, .grn) {
                grn = (node.node.inputs[1], node.node.inputs[2], node.node.float("grn_epsilon") ?? 1e-6)
                removed.insert(node.index)
                cursor = node.node.outputs[0]
            }
            guard let l2 = index.soleConsumer(cursor, .linear), l2.node.string("activation") == nil,
                let w2 = index.constant(l2.node.inputs[1]), w2.shape == [hidden, c],
                let t2 = index.soleConsumer(l2.node.outputs[0], .transpose), t2.node.ints("perm") == [0, 3, 1, 2],
                let add = index.soleConsumer(t2.node.outputs[0], .add), index.other(add.node, than: t2.node.outputs[0]) == x
            else { continue }
            removed.formUnion([l2.index, t2.index, add.index])
            let out = add.node.outputs[0]
            // Depthwise weight [C, 1, k, k] -> [k, k, C], the layout the channels-last kernel reads.
            let dwName = g.freshName("\(out).dw_weight")
            let dwWeight = permute(w.reshaped([c, k, k]), [1, 2, 0])
            var tensors = [dwName: dwWeight]
            func bias(_ node: Node, slot: Int, count: Int, label: String) -> Constant? {
                if node.inputs.count > slot, !node.inputs[slot].isEmpty {
                    return index.constant(node.inputs[slot]).map { Constant(name: node.inputs[slot], tensor: $0) }
                }
                let name = g.freshName("\(out).\(label)")
                tensors[name] = Tensor(zeros: .float32, shape: [count])
                return Constant(name: name, tensor: tensors[name]!)
            }
            guard let dwBias = bias(dw, slot: 2, count: c, label: "dw_bias"),
                let b1 = bias(l1.node, slot: 2, count: hidden, label: "b1"),
                let b2 = bias(l2.node, slot: 2, count: c, label: "b2"),
                let fusedActivation = FusedActivation(rawValue: activation)
            else { continue }
            var grnParameters: GRNParameters?
            if let grn {
                guard let gt = index.constant(grn.gamma), let bt = index.constant(grn.beta) else { continue }
                grnParameters = GRNParameters(
                    gamma: Constant(name: grn.gamma, tensor: gt), beta: Constant(name: grn.beta, tensor: bt),
                    epsilon: grn.eps)
            }
            let payload = BlockPayload(
                depthwise: Depthwise(weight: Constant(name: dwName, tensor: dwWeight), bias: dwBias),
                norm: norm.fused(),
                pw1: Linear(weight: Constant(name: l1.node.inputs[1], tensor: w1), bias: b1, precision: .float32),
                activation: fusedActivation, grn: grnParameters,
                pw2: Linear(weight: Constant(name: l2.node.inputs[1], tensor: w2), bias: b2, precision: .float32))
            let nhwcIn = g.freshName("\(x).nhwc"), nhwcOut = g.freshName("\(out).nhwc")
            g.replace(
                removed,
                with: [
                    toNHWC(dw.name, x, nhwcIn),
                    FusedPayload.block(payload).node(name: dw.name, input: nhwcIn, outputs: [nhwcOut]),
                    toNCHW(add.node.name, nhwcOut, out),
                ], adding: tensors)
            return true
        }
        return false
    }
}
