import CNXGraph
import CNXReference

/// Patchify convolutions: k x k, stride k, no padding, one group, dilation 1, constant weight.
private func patchify(_ node: Node, _ index: GraphIndex) -> (weight: Tensor, k: Int)? {
    guard let (w, k, stride, pad) = squareConvolution(node, index), stride == k, pad == 0, k > 1 else { return nil }
    return (w, k)
}

/// A dense 2-D convolution with a square k x k kernel, equal strides, the same padding on every
/// side, one group, dilation 1 and a constant weight: its weight, k, stride and padding.
private func squareConvolution(_ node: Node, _ index: GraphIndex) -> (weight: Tensor, k: Int, stride: Int, pad: Int)? {
    guard node.op == .conv, let w = index.constant(node.inputs[1]), w.dtype == .float32, w.shape.count == 4 else { return nil }
    let k = w.shape[2]
    let strides = node.ints("strides") ?? [1, 1], pads = node.ints("pads") ?? [0, 0, 0, 0]
    guard w.shape[3] == k, k >= 1, (node.int("group") ?? 1) == 1, strides.count == 2, strides[0] == strides[1], strides[0] >= 1,
        pads.count == 4, Set(pads).count == 1, pads[0] >= 0, pads[0] < k, (node.ints("dilations") ?? [1, 1]) == [1, 1]
    else { return nil }
    let autoPad = node.string("auto_pad") ?? "NOTSET"
    guard autoPad == "NOTSET" || (autoPad == "VALID" && pads[0] == 0) else { return nil }
    return (w, k, strides[0], pads[0])
}

/// A per-channel vector tensor of `count` values reshaped to [count].
private func vector(_ name: String, _ count: Int, _ index: GraphIndex) -> Tensor? {
    index.constant(name)?.vector(of: count).map { Tensor(floats: $0, shape: [count]) }
}

/// Fuses the stem: the convolutions at the start of the network, each with the activation and
/// the norm over channels that may follow it, become `cnx.Stem` operations that write NHWC.
///
/// - the patchify stem (k x k stride k, then a norm: every ConvNeXt but the overlapping ones);
/// - the overlapping stems of timm's `_ols` models (`overlap`, `overlap_tiered`, `overlap_act`):
///   two 3x3 stride-2 convolutions with padding 1, the first followed by an activation in
///   `overlap_act`, the second by the norm; the second reads the first's NHWC output directly
///   (`input_layout` "nhwc");
/// - the isotropic model's patchify convolution, which has no norm (`norm` "none").
///
/// A stem convolution reads the graph's input, or the map an earlier stem wrote; any other
/// convolution belongs to a block or a downsample layer and is left for those passes.
public struct FuseStem: RepeatedRewrite {
    public let name = "fuse-stem"
    public let summary = "the convolutions reading the image (+ activation, + norm over channels) -> cnx.Stem"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        let imageInputs = Set(g.inputs.map(\.name))
        for (i, conv) in g.nodes.enumerated() {
            guard let (w, k, stride, pad) = squareConvolution(conv, index), !(k == 1 && stride == 1) else { continue }
            // What the convolution reads: the image (NCHW), or an earlier stem's NHWC map seen
            // through the transpose that made it NCHW.
            var source = conv.inputs[0], nhwc = false
            var removed: Set<Int> = [i]
            if !imageInputs.contains(source) {
                guard let t = index.producer(source, .transpose), t.node.ints("perm") == [0, 3, 1, 2],
                    index.producer(t.node.inputs[0], .stem) != nil
                else { continue }
                source = t.node.inputs[0]
                nhwc = true
                if index.soleConsumer(conv.inputs[0]) != nil { removed.insert(t.index) }
            }
            let (cout, cin) = (w.shape[0], w.shape[1])
            var cursor = conv.outputs[0]
            var activation: FusedActivation?
            if let act = index.soleConsumer(cursor), let name = Activation.name(of: act.node) {
                guard let a = FusedActivation(rawValue: name) else { continue }
                activation = a
                removed.insert(act.index)
                cursor = act.node.outputs[0]
            }
            var fusedNorm = Norm(kind: .none, epsilon: 1e-6)
            var tensors: [String: Tensor] = [:]
            // The NHWC value the stem writes, when the norm's output is read as NHWC by more than
            // the transpose back (a transformers backbone's output norm of the stem): the stem
            // writes that value, and the transpose back stays.
            var sharedNHWC: String?
            if let t = index.soleConsumer(cursor, .transpose), t.node.ints("perm") == [0, 2, 3, 1],
                let reader = index.soleConsumer(t.node.outputs[0]), reader.node.inputs.first == t.node.outputs[0],
                let (norm, back, shared) = index.channelsFirstNormShared(reader, channels: cout),
                let scale = vector(norm.scale, cout, index)
            {
                let sName = g.freshName("\(back.node.outputs[0]).stem_scale")
                tensors[sName] = scale
                var shiftConstant: Constant?
                if let shift = norm.shift, let beta = vector(shift, cout, index) {
                    let name = g.freshName("\(back.node.outputs[0]).stem_shift")
                    tensors[name] = beta
                    shiftConstant = Constant(name: name, tensor: beta)
                }
                fusedNorm = norm.fused(weight: Constant(name: sName, tensor: scale), bias: shiftConstant)
                removed.formUnion([t.index, norm.index])
                if shared {
                    sharedNHWC = norm.node.outputs[0]
                } else {
                    removed.insert(back.index)
                }
                cursor = back.node.outputs[0]
            }
            let out = cursor
            // Weight [Cout, Cin, k, k] -> [Cin*k*k, Cout], rows in (channel, ky, kx) order for an
            // NCHW image, or [k*k*Cin, Cout] in (ky, kx, channel) order for an NHWC map.
            let wName = g.freshName("\(out).stem_weight"), bName = g.freshName("\(out).stem_bias")
            tensors[wName] = nhwc ? permute(w, [2, 3, 1, 0]).reshaped([k * k * cin, cout]) : transpose2D(w.reshaped([cout, cin * k * k]))
            if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
                guard let b = vector(conv.inputs[2], cout, index) else { continue }
                tensors[bName] = b
            } else {
                tensors[bName] = Tensor(zeros: .float32, shape: [cout])
            }
            let payload = FusedPayload.stem(
                StemPayload(
                    conv: Linear(
                        weight: Constant(name: wName, tensor: tensors[wName]!), bias: Constant(name: bName, tensor: tensors[bName]!),
                        precision: .float32),
                    kernel: k, stride: stride, pad: pad, nhwcInput: nhwc, activation: activation, norm: fusedNorm))
            if let sharedNHWC {
                g.replace(removed, with: [payload.node(name: conv.name, input: source, outputs: [sharedNHWC])], adding: tensors)
                return true
            }
            let mapName = g.freshName("\(out).nhwc")
            g.replace(
                removed,
                with: [
                    payload.node(name: conv.name, input: source, outputs: [mapName]),
                    toNCHW(conv.name, mapName, out),
                ], adding: tensors)
            return true
        }
        return false
    }
}

/// Fuses each downsample layer: a norm over channels (LayerNorm, RMSNorm or SimpleNorm)
/// followed by a patchify convolution (2x2, stride 2 in ConvNeXt) becomes one
/// `cnx.Downsample`, channels-last in and out, with the norm's affine folded into the
/// convolution's weight and bias.
public struct FuseDownsample: RepeatedRewrite {
    public let name = "fuse-downsample"
    public let summary = "norm over channels -> patchify Conv -> cnx.Downsample"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for t in g.nodes where t.op == .transpose {
            // The norm's channel count comes from the convolution that reads it. The NHWC map
            // may have other readers than the norm (a transformers backbone's output norm of
            // the same stage output): the downsample reads it all the same.
            guard t.ints("perm") == [0, 2, 3, 1] else { continue }
            for n in index.consumers[t.outputs[0]] ?? [] {
                let normNode = (index: n, node: g.nodes[n])
                guard normNode.node.inputs.first == t.outputs[0],
                    let back = index.soleConsumer(normNode.node.outputs[0], .transpose), back.node.ints("perm") == [0, 3, 1, 2],
                    let conv = index.soleConsumer(back.node.outputs[0], .conv), conv.node.inputs[0] == back.node.outputs[0],
                    let (w, k) = patchify(conv.node, index)
                else { continue }
                let (cout, cin) = (w.shape[0], w.shape[1])
                guard let norm = index.lastAxisNorm(normNode, channels: cin, rank: 4),
                    let scale = vector(norm.scale, cin, index)
                else { continue }
                if fuse(&g, index, t, norm, back, conv, w, k, cout, cin, scale) { return true }
            }
        }
        return false
    }

    private func fuse(
        _ g: inout Graph, _ index: GraphIndex, _ t: Node, _ norm: LastAxisNorm, _ back: (index: Int, node: Node),
        _ conv: (index: Int, node: Node), _ w: Tensor, _ k: Int, _ cout: Int, _ cin: Int, _ scale: Tensor
    ) -> Bool {
        let out = conv.node.outputs[0]
        // Weight [Cout, Cin, k, k] -> [k*k*Cin, Cout]: patches are read in (ky, kx, channel)
        // order. The norm's scale and shift fold into it (row (ky, kx, c) times gamma[c], and
        // W^T beta into the bias), so the GEMM reads the plain normalised map: exact in
        // float32, and for int8 the quantized activation is the same unit-scale one for
        // every channel.
        let reordered = permute(w, [2, 3, 1, 0]).reshaped([k * k * cin, cout])
        var bias = [Float](repeating: 0, count: cout)
        if conv.node.inputs.count > 2, !conv.node.inputs[2].isEmpty {
            guard let b = vector(conv.node.inputs[2], cout, index) else { return false }
            bias = b.floats
        }
        let beta = norm.shift.flatMap { vector($0, cin, index)?.floats } ?? [Float](repeating: 0, count: cin)
        let tile = { (v: [Float]) in [[Float]](repeating: v, count: k * k).flatMap { $0 } }
        let (foldedW, foldedB) = foldAffineIntoLinear(weight: reordered, bias: bias, gamma: tile(scale.floats), beta: tile(beta))
        let wName = g.freshName("\(out).ds_weight"), bName = g.freshName("\(out).ds_bias")
        let tensors = [wName: foldedW, bName: foldedB]
        let payload = FusedPayload.downsample(
            DownsamplePayload(
                norm: norm.fused(), kernel: k,
                conv: Linear(
                    weight: Constant(name: wName, tensor: foldedW), bias: Constant(name: bName, tensor: foldedB), precision: .float32)))
        let nhwc = g.freshName("\(out).nhwc")
        g.replace(
            [norm.index, back.index, conv.index],
            with: [
                payload.node(name: conv.node.name, input: t.outputs[0], outputs: [nhwc]),
                toNCHW(conv.node.name, nhwc, out),
            ], adding: tensors)
        return true
    }
}
