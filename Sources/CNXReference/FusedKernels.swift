import CKernels
import CReferenceKernels
import CNXGraph
import Foundation

/// Reference implementations of the project's fused operations (Formats/CNX.md), composed from
/// the plain kernels: slow but obviously right, the oracle for the fast runtime.
extension Kernels {
    static func evaluateFused(_ node: Node, _ args: [Tensor?]) throws -> [Tensor] {
        func arg(_ i: Int) throws -> Tensor {
            guard i < args.count, let t = args[i] else { throw CNXError("input \(i) is missing") }
            return try float(t)
        }
        func optionalArg(_ i: Int) throws -> Tensor? { i < args.count ? try args[i].map(float) : nil }
        let eps = node.float("epsilon") ?? 1e-6
        switch node.op {
        case .linear:
            let y = try linear(arg(0), arg(1), optionalArg(2))
            activate(y, try activationName(node, absent: nil))
            return [y]
        case .grn:
            return [try grn(arg(0), arg(1), arg(2), eps: node.float("grn_epsilon") ?? 1e-6)]
        case .stem:
            let x = try arg(0)
            guard let w = args.count > 1 ? args[1] : nil else { throw CNXError("input 1 is missing") }
            let k = try kernelSize(node)
            let stride = node.int("stride") ?? k, pad = node.int("pad") ?? 0
            let nhwc = node.string("input_layout") == "nhwc"
            guard x.shape.count == 4, stride > 0, pad >= 0, w.shape.count == 2 else {
                throw CNXError("input \(x.shape) does not fit a \(k)x\(k) stem with weight \(w.shape)")
            }
            // As NCHW whatever the layout, so one loop reads both.
            let image = nhwc ? try transpose(x, [0, 3, 1, 2]) : x
            let (n, c, h, wd) = (image.shape[0], image.shape[1], image.shape[2], image.shape[3])
            let oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1
            guard h + 2 * pad >= k, wd + 2 * pad >= k, w.shape[0] == c * k * k else {
                throw CNXError("input \(x.shape) does not fit a \(k)x\(k) stem with weight \(w.shape)")
            }
            // Patch rows in (channel, ky, kx) order for an NCHW image, (ky, kx, channel) for an
            // NHWC map: the order of the weight's rows.
            let patches = Tensor(zeros: .float32, shape: [n, oh, ow, c * k * k])
            let xp = image.floatPointer, pp = patches.floatPointer
            for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow {
                let row = pp + ((b * oh + oy) * ow + ox) * c * k * k
                for ch in 0..<c { for ky in 0..<k { for kx in 0..<k {
                    let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                    row[nhwc ? (ky * k + kx) * c + ch : (ch * k + ky) * k + kx] = xp[((b * c + ch) * h + iy) * wd + ix]
                } } }
            } } }
            let y = try pointwise(patches, node, args, slot: 1, layer: 1)
            activate(y, try activationName(node, absent: nil))
            let kind = try FusedAttributes.norm(node, allowNone: true)
            return [kind == .none ? y : try norm(kind, y, optionalArg(3), optionalArg(4), eps: eps)]
        case .downsample:
            let x = try arg(0)
            guard let w = args.count > 1 ? args[1] : nil else { throw CNXError("input 1 is missing") }
            let k = try kernelSize(node)
            guard x.shape.count == 4, x.shape[1] % k == 0, x.shape[2] % k == 0, w.shape.count == 2, w.shape[0] == x.shape[3] * k * k else {
                throw CNXError("input \(x.shape) does not fit a \(k)x\(k) downsample with weight \(w.shape)")
            }
            let normed = try norm(FusedAttributes.norm(node), x, optionalArg(3), optionalArg(4), eps: eps)
            let (n, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let oh = h / k, ow = wd / k
            // Patches in (ky, kx, channel) order: whole channel rows copy at once.
            let patches = Tensor(zeros: .float32, shape: [n, oh, ow, k * k * c])
            for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ky in 0..<k { for kx in 0..<k {
                let src = normed.floatPointer + ((b * h + oy * k + ky) * wd + ox * k + kx) * c
                let dst = patches.floatPointer + ((b * oh + oy) * ow + ox) * k * k * c + (ky * k + kx) * c
                dst.update(from: src, count: c)
            } } } } }
            return [try pointwise(patches, node, args, slot: 1, layer: 1)]
        case .block:
            let x = try arg(0), dw = try arg(1), dwb = try arg(2)
            guard x.shape.count == 4, dw.shape.count == 3, dw.shape[0] == dw.shape[1], dw.shape[0] % 2 == 1, dw.shape[2] == x.shape[3], dwb.count == x.shape[3] else {
                throw CNXError("input \(x.shape) does not fit depthwise weight \(dw.shape)")
            }
            let t = Tensor(zeros: .float32, shape: x.shape)
            cnx_dwconv_nhwc_f32(x.floatPointer, Int64(x.shape[0]), Int64(x.shape[1]), Int64(x.shape[2]), Int64(x.shape[3]),
                                Int64(dw.shape[0]), dw.floatPointer, dwb.floatPointer, t.floatPointer)
            let normed = try norm(FusedAttributes.norm(node), t, nil, nil, eps: eps)
            var hidden = try pointwise(normed, node, args, slot: 3, layer: 1)
            activate(hidden, try activationName(node, absent: "gelu"))
            if let gamma = try optionalArg(7), let beta = try optionalArg(8) {
                hidden = try grn(hidden, gamma, beta, eps: node.float("grn_epsilon") ?? 1e-6)
            }
            let y = try pointwise(hidden, node, args, slot: 5, layer: 2)
            guard y.shape == x.shape else { throw CNXError("block output \(y.shape) differs from its input \(x.shape)") }
            let yp = y.floatPointer, xp = x.floatPointer
            for i in 0..<y.count { yp[i] += xp[i] }
            return [y]
        case .head:
            let x = try arg(0)
            guard x.shape.count == 4 else { throw CNXError("head input must be NHWC, got \(x.shape)") }
            let (n, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let kind = try FusedAttributes.norm(node)
            var features = Tensor(zeros: .float32, shape: [n, c])
            if node.int("norm_first") == 1 {
                let normed = try norm(kind, x, optionalArg(5), optionalArg(6), eps: eps)
                cnx_reduce_middle_f32(normed.floatPointer, Int64(n), Int64(h * wd), Int64(c), 0, features.floatPointer)
            } else {
                cnx_reduce_middle_f32(x.floatPointer, Int64(n), Int64(h * wd), Int64(c), 0, features.floatPointer)
                features = try norm(kind, features, optionalArg(5), optionalArg(6), eps: eps)
            }
            if args.count > 1, args[1] != nil {
                features = try pointwise(features, node, args, slot: 1, layer: 1)
                activate(features, try activationName(node, absent: nil))
                if args.count > 3, args[3] != nil { features = try pointwise(features, node, args, slot: 3, layer: 2) }
            }
            return [features]
        case .features:
            let x = try arg(0)
            guard x.shape.count == 4 else { throw CNXError("input must be NHWC, got \(x.shape)") }
            let kind = try FusedAttributes.norm(node, allowNone: true)
            let normed = kind == .none ? x : try norm(kind, x, optionalArg(1), optionalArg(2), eps: eps)
            return [try transpose(normed, [0, 3, 1, 2])]
        default:
            throw CNXError("not a fused operation")
        }
    }

    /// The activation a fused op names (`absent` when it names none), checked.
    static func activationName(_ node: Node, absent: String?) throws -> String? {
        _ = try FusedAttributes.activation(node, absent: CNX_ACT_NONE)
        return node.string("activation") ?? absent
    }

    /// x = act(x) in place with the activations' scalar specification (the `_ref` twin the
    /// fast kernels are tested against, so that int8 rounding boundaries fall where the fast
    /// epilogues put them).
    static func activate(_ x: Tensor, _ name: String?) {
        let code: Int32
        switch name {
        case "gelu": code = CNX_ACT_GELU
        case "gelu_tanh": code = CNX_ACT_GELU_TANH
        case "silu": code = CNX_ACT_SILU
        default: return
        }
        cnx_activation_inplace_f32_ref(x.floatPointer, Int64(x.count), code)
    }

    /// A norm over the last axis with optional scale and shift, in the reference arithmetic.
    static func norm(_ kind: NormKind, _ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?, eps: Float) throws -> Tensor {
        switch kind {
        case .layer, .none:
            return try layerNormLast(x, gamma, beta, eps: eps)
        case .rms, .simple:
            let c = x.shape.last ?? 1
            if let beta, beta.count != c { throw CNXError("norm bias has \(beta.count) values for \(c) channels") }
            let y = try rowNorm(x, scale: gamma, from: max(0, x.shape.count - 1), eps: eps, kind: kind == .rms ? .rms : .simple)
            if let beta {
                for r in 0..<(y.count / max(c, 1)) { for j in 0..<c { y.floatPointer[r * c + j] += beta.floatPointer[j] } }
            }
            return y
        }
    }

    /// A fused op's GEMM: weight at input `slot`, bias at `slot + 1` (a block's layers 1 and 2
    /// are inputs 3-4 and 5-6; the stem's and downsample's single layer is 1-2; a head's
    /// layers 1 and 2 are 1-2 and 3-4).
    /// float32, or int8 when its weight is int8, with the activation quantization in the
    /// attributes `a<layer>_scale`, `a<layer>_zero`, the per-output-channel weight scales in
    /// `w<layer>_scales` and the optional per-input-channel equalization `a<layer>_channel_scales`.
    static func pointwise(_ x: Tensor, _ node: Node, _ args: [Tensor?], slot: Int, layer: Int) throws -> Tensor {
        guard slot + 1 < args.count, let w = args[slot], let b = args[slot + 1] else { throw CNXError("pointwise layer \(layer) is missing") }
        if w.dtype == .float32 { return try linear(x, w, float(b)) }
        // bfloat16 / float16 weights: their exact float32 values, float32 arithmetic.
        if let wide = w.widenedHalf() { return try linear(x, wide, float(b)) }
        guard w.dtype == .int8, w.shape.count == 2, let k = x.shape.last, k == w.shape[0] else {
            throw CNXError("pointwise layer \(layer): weight \(w.dtype.name) \(w.shape) does not fit input \(x.shape)")
        }
        let q = try QuantizedLayer(node, layer: layer, outputs: w.shape[1], inputs: k)
        let n = w.shape[1], rows = x.count / max(k, 1)
        var input = x
        if let s = q.channelScales {
            input = Tensor(zeros: .float32, shape: x.shape)
            for i in 0..<x.count { input.floatPointer[i] = x.floatPointer[i] / s[i % k] }
        }
        let codes = Tensor(zeros: .uint8, shape: x.shape)
        cnx_quantize_u8_reference(input.floatPointer, Int64(x.count), q.activationScale, q.activationZero,
                                  codes.storage.bytes.assumingMemoryBound(to: UInt8.self))
        let y = Tensor(zeros: .float32, shape: Array(x.shape.dropLast()) + [n])
        let bias = try float(b)
        try q.weightScales.withUnsafeBufferPointer { scales in
            guard bias.count == n else { throw CNXError("pointwise layer \(layer): bias has \(bias.count) values for \(n) outputs") }
            cnx_qlinear_reference(Int64(rows), Int64(n), Int64(k), codes.storage.bytes.assumingMemoryBound(to: UInt8.self),
                                  w.storage.bytes.assumingMemoryBound(to: Int8.self), q.activationZero, q.activationScale,
                                  scales.baseAddress, bias.floatPointer, y.floatPointer)
        }
        return y
    }

    static func kernelSize(_ node: Node) throws -> Int {
        guard let k = node.int("kernel"), k > 0 else { throw CNXError("missing or invalid 'kernel'") }
        return k
    }

    /// x[..., K] · w[K, N] + b.
    static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) throws -> Tensor {
        guard w.shape.count == 2, let k = x.shape.last, k == w.shape[0] else {
            throw CNXError("input \(x.shape) does not fit weight \(w.shape)")
        }
        let n = w.shape[1], rows = x.count / max(k, 1)
        if let b, b.count != n { throw CNXError("bias has \(b.count) values for \(n) outputs") }
        let y = Tensor(zeros: .float32, shape: Array(x.shape.dropLast()) + [n])
        if let b {
            for r in 0..<rows { (y.floatPointer + r * n).update(from: b.floatPointer, count: n) }
        }
        cnx_sgemm(0, 0, Int64(rows), Int64(n), Int64(k), 1, x.floatPointer, Int64(k), w.floatPointer, Int64(n), b == nil ? 0 : 1, y.floatPointer, Int64(n))
        return y
    }

    static func layerNormLast(_ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?, eps: Float) throws -> Tensor {
        let c = x.shape.last ?? 1
        if let gamma, gamma.count != c { throw CNXError("LayerNorm scale has \(gamma.count) values for \(c) channels") }
        if let beta, beta.count != c { throw CNXError("LayerNorm bias has \(beta.count) values for \(c) channels") }
        let y = Tensor(zeros: .float32, shape: x.shape)
        cnx_layernorm_lastaxis_f32(x.floatPointer, Int64(x.count / max(c, 1)), Int64(c), gamma?.floatPointer, beta?.floatPointer, eps, y.floatPointer)
        return y
    }

    /// ConvNeXt V2's GRN on an NHWC map: Gx = ||x||₂ over H, W; Nx = Gx / (mean over C of Gx + eps);
    /// y = gamma ⊙ (x ⊙ Nx) + beta + x.
    static func grn(_ x: Tensor, _ gamma: Tensor, _ beta: Tensor, eps: Float) throws -> Tensor {
        guard x.shape.count == 4 else { throw CNXError("GRN input must be NHWC, got \(x.shape)") }
        let (n, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        guard gamma.count == c, beta.count == c else { throw CNXError("GRN parameters must have \(c) values") }
        let y = Tensor(zeros: .float32, shape: x.shape)
        let norms = Tensor(zeros: .float32, shape: [n, c])
        cnx_reduce_middle_f32(x.floatPointer, Int64(n), Int64(hw), Int64(c), 1, norms.floatPointer)
        for b in 0..<n {
            let g = norms.floatPointer + b * c
            var mean: Float = 0
            for i in 0..<c { mean += g[i] }
            mean /= Float(c)
            for p in 0..<hw {
                let xp = x.floatPointer + (b * hw + p) * c, yp = y.floatPointer + (b * hw + p) * c
                for i in 0..<c { yp[i] = gamma.floatPointer[i] * (xp[i] * (g[i] / (mean + eps))) + beta.floatPointer[i] + xp[i] }
            }
        }
        return y
    }
}

/// The quantization parameters of one int8 pointwise layer of a fused block.
package struct QuantizedLayer {
    package let activationScale: Float
    package let activationZero: Int32
    package let weightScales: [Float]
    /// `a<layer>_channel_scales`: the input is divided by these, per input channel, before it is
    /// quantized (the int8 weight's rows were multiplied by them), or nil.
    package let channelScales: [Float]?

    package init(_ node: Node, layer: Int, outputs n: Int, inputs k: Int? = nil) throws {
        guard let scale = node.float("a\(layer)_scale"), scale > 0, scale.isFinite,
              let zero = node.int("a\(layer)_zero"), (0...255).contains(zero),
              case .tensor(let w)? = node.attributes["w\(layer)_scales"], w.dtype == .float32, w.count == n else {
            throw CNXError("int8 pointwise layer \(layer) lacks valid a\(layer)_scale, a\(layer)_zero or w\(layer)_scales (\(n) values)")
        }
        activationScale = scale
        activationZero = Int32(zero)
        weightScales = w.floats
        guard weightScales.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw CNXError("w\(layer)_scales must be positive") }
        if let attribute = node.attributes["a\(layer)_channel_scales"] {
            guard case .tensor(let c) = attribute, c.dtype == .float32, k == nil || c.count == k,
                  c.floats.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw CNXError("a\(layer)_channel_scales must hold \(k.map(String.init) ?? "one per input channel") positive float32 values")
            }
            channelScales = c.floats
        } else {
            channelScales = nil
        }
    }
}
