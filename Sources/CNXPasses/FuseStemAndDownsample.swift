import CNXGraph

/// Patchify convolutions: k x k, stride k, no padding, one group, dilation 1, constant weight.
private func patchify(_ node: Node, _ index: GraphIndex) -> (weight: Tensor, k: Int)? {
    guard node.op == .conv, let w = index.constant(node.inputs[1]), w.dtype == .float32, w.shape.count == 4 else { return nil }
    let k = w.shape[2]
    guard w.shape[3] == k, k > 1, (node.int("group") ?? 1) == 1, (node.ints("strides") ?? [1, 1]) == [k, k],
          (node.ints("pads") ?? [0, 0, 0, 0]).allSatisfy({ $0 == 0 }), (node.ints("dilations") ?? [1, 1]) == [1, 1],
          ["NOTSET", "VALID"].contains(node.string("auto_pad") ?? "NOTSET") else { return nil }
    return (w, k)
}

/// A channels-last LayerNorm (Transpose to NHWC, LayerNormalization over the last axis,
/// Transpose back) starting at the transpose `t`: its scale, shift, epsilon and node indices.
private func channelsFirstLayerNorm(from t: (index: Int, node: Node), channels: Int, _ index: GraphIndex)
    -> (scale: String, shift: String?, eps: Float, ln: Int, back: (index: Int, node: Node))? {
    guard t.node.ints("perm") == [0, 2, 3, 1],
          let ln = index.soleConsumer(t.node.outputs[0], .layerNormalization), ln.node.inputs[0] == t.node.outputs[0],
          (ln.node.int("axis") ?? -1) == -1 || ln.node.int("axis") == 3, ln.node.inputs.count >= 2,
          index.constant(ln.node.inputs[1])?.vector(of: channels) != nil,
          let back = index.soleConsumer(ln.node.outputs[0], .transpose), back.node.ints("perm") == [0, 3, 1, 2] else { return nil }
    var shift: String?
    if ln.node.inputs.count > 2, !ln.node.inputs[2].isEmpty {
        guard index.constant(ln.node.inputs[2])?.vector(of: channels) != nil else { return nil }
        shift = ln.node.inputs[2]
    }
    return (ln.node.inputs[1], shift, ln.node.float("epsilon") ?? 1e-5, ln.index, back)
}

/// A per-channel vector tensor of `count` values reshaped to [count].
private func vector(_ name: String, _ count: Int, _ index: GraphIndex) -> Tensor? {
    index.constant(name)?.vector(of: count).map { Tensor(floats: $0, shape: [count]) }
}

/// Fuses the stem: a patchify convolution of the NCHW image followed by a LayerNorm over
/// channels becomes one `cnx.Stem` (NCHW in, NHWC out). An overlapping stem (nano_ols) or a
/// stem without the LayerNorm is left alone.
public struct FuseStem: Pass {
    public let name = "fuse-stem"
    public let summary = "patchify Conv -> LayerNorm over channels -> cnx.Stem"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in fuseOne(&g) }
    }

    private func fuseOne(_ g: inout Graph) -> Bool {
        let index = GraphIndex(g)
        for (i, conv) in g.nodes.enumerated() {
            guard let (w, k) = patchify(conv, index), let t = index.soleConsumer(conv.outputs[0], .transpose) else { continue }
            let (cout, cin) = (w.shape[0], w.shape[1])
            guard let ln = channelsFirstLayerNorm(from: t, channels: cout, index),
                  let scale = vector(ln.scale, cout, index) else { continue }
            let out = ln.back.node.outputs[0]
            // Weight [Cout, Cin, k, k] -> [Cin*k*k, Cout]: patches are read in (channel, ky, kx) order.
            let wName = g.freshName("\(out).stem_weight"), sName = g.freshName("\(out).stem_scale")
            var tensors = [wName: transpose2D(w.reshaped([cout, cin * k * k])), sName: scale]
            var inputs = [conv.inputs[0], wName]
            if conv.inputs.count > 2, !conv.inputs[2].isEmpty, let b = vector(conv.inputs[2], cout, index) {
                let bName = g.freshName("\(out).stem_bias")
                tensors[bName] = b
                inputs.append(bName)
            } else {
                let bName = g.freshName("\(out).stem_bias")
                tensors[bName] = Tensor(zeros: .float32, shape: [cout])
                inputs.append(bName)
            }
            inputs.append(sName)
            if let shift = ln.shift, let beta = vector(shift, cout, index) {
                let name = g.freshName("\(out).stem_shift")
                tensors[name] = beta
                inputs.append(name)
            }
            let nhwc = g.freshName("\(out).nhwc")
            g.replace([i, t.index, ln.ln, ln.back.index], with: [
                Node(name: conv.name, op: .stem, inputs: inputs, outputs: [nhwc], attributes: ["kernel": .int(k), "epsilon": .float(ln.eps)]),
                Node(name: "\(conv.name).to_nchw", op: .transpose, inputs: [nhwc], outputs: [out], attributes: ["perm": .ints([0, 3, 1, 2])]),
            ], adding: tensors)
            return true
        }
        return false
    }
}

/// Fuses each downsample layer: a LayerNorm over channels followed by a patchify convolution
/// (2x2, stride 2 in ConvNeXt) becomes one `cnx.Downsample`, channels-last in and out.
public struct FuseDownsample: Pass {
    public let name = "fuse-downsample"
    public let summary = "LayerNorm over channels -> patchify Conv -> cnx.Downsample"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in fuseOne(&g) }
    }

    private func fuseOne(_ g: inout Graph) -> Bool {
        let index = GraphIndex(g)
        for (i, t) in g.nodes.enumerated() where t.op == .transpose {
            // The LayerNorm's channel count comes from the convolution that reads it.
            guard t.ints("perm") == [0, 2, 3, 1], let lnNode = index.soleConsumer(t.outputs[0], .layerNormalization),
                  let back = index.soleConsumer(lnNode.node.outputs[0], .transpose),
                  let conv = index.soleConsumer(back.node.outputs[0], .conv), conv.node.inputs[0] == back.node.outputs[0],
                  let (w, k) = patchify(conv.node, index) else { continue }
            let (cout, cin) = (w.shape[0], w.shape[1])
            guard let ln = channelsFirstLayerNorm(from: (i, t), channels: cin, index), ln.back.index == back.index,
                  let scale = vector(ln.scale, cin, index) else { continue }
            let out = conv.node.outputs[0]
            // Weight [Cout, Cin, k, k] -> [k*k*Cin, Cout]: patches are read in (ky, kx, channel) order.
            let wName = g.freshName("\(out).ds_weight"), sName = g.freshName("\(out).ds_scale"), bName = g.freshName("\(out).ds_bias")
            let reordered = permute(w, [2, 3, 1, 0]).reshaped([k * k * cin, cout])
            var tensors = [wName: reordered, sName: scale]
            if conv.node.inputs.count > 2, !conv.node.inputs[2].isEmpty, let b = vector(conv.node.inputs[2], cout, index) {
                tensors[bName] = b
            } else {
                tensors[bName] = Tensor(zeros: .float32, shape: [cout])
            }
            var inputs = [t.outputs[0], wName, bName, sName]
            if let shift = ln.shift, let beta = vector(shift, cin, index) {
                let name = g.freshName("\(out).ds_shift")
                tensors[name] = beta
                inputs.append(name)
            }
            let nhwc = g.freshName("\(out).nhwc")
            g.replace([ln.ln, back.index, conv.index], with: [
                Node(name: conv.node.name, op: .downsample, inputs: inputs, outputs: [nhwc], attributes: ["kernel": .int(k), "epsilon": .float(ln.eps)]),
                Node(name: "\(conv.node.name).to_nchw", op: .transpose, inputs: [nhwc], outputs: [out], attributes: ["perm": .ints([0, 3, 1, 2])]),
            ], adding: tensors)
            return true
        }
        return false
    }
}
