import CKernels
import CNXGraph
import CReferenceKernels
import Foundation

/// Reference implementations of the project's fused operations (Formats/CNX.md), composed from
/// the plain kernels: slow but obviously right, the oracle for the fast runtime.
extension Kernels {
    /// The k x k patches of `x`, an NCHW image or an NHWC map, taken every `stride` pixels
    /// with `pad` zeros around: [N, OH, OW, C·k·k], each patch a GEMM row in the order of the
    /// weight's rows, (channel, ky, kx) for NCHW and (ky, kx, channel) for NHWC. The caller has
    /// checked that a patch fits (H + 2·pad >= k).
    static func patches(_ x: Tensor, nhwc: Bool, kernel k: Int, stride: Int, pad: Int) -> Tensor {
        let (n, c, h, w) = nhwc ? (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) : (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1
        let patches = Tensor(zeros: .float32, shape: [n, oh, ow, c * k * k])
        x.withUnsafeFloats { src in
            patches.withUnsafeMutableFloats { dst in
                for b in 0..<n {
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            let row = ((b * oh + oy) * ow + ox) * c * k * k
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    for ch in 0..<c {
                                        dst[row + (nhwc ? (ky * k + kx) * c + ch : (ch * k + ky) * k + kx)] =
                                            src[nhwc ? ((b * h + iy) * w + ix) * c + ch : ((b * c + ch) * h + iy) * w + ix]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return patches
    }

    static func evaluateFused(_ node: Node, _ args: [Tensor?]) throws -> [Tensor] {
        func arg(_ i: Int) throws -> Tensor {
            guard i < args.count, let t = args[i] else { throw CNXError("input \(i) is missing") }
            return try float(t)
        }
        func optionalArg(_ i: Int) throws -> Tensor? { i < args.count ? try args[i].map(float) : nil }
        switch node.op {
        case .linear:
            let y = try linear(arg(0), arg(1), optionalArg(2))
            activate(y, try activation(node))
            return [y]
        case .grn:
            return [try grn(arg(0), arg(1), arg(2), eps: node.float("grn_epsilon") ?? 1e-6)]
        case .features:
            let x = try arg(0)
            guard x.shape.count == 4 else { throw CNXError("input must be NHWC, got \(x.shape)") }
            let p = try FeaturesPayload(node)
            let normed = p.kind == .none ? x : try norm(p.kind, x, optionalArg(1), optionalArg(2), eps: p.epsilon)
            return [try transpose(normed, [0, 3, 1, 2])]
        default:
            break
        }
        // The fused ConvNeXt operations: their constants are this evaluation's arguments.
        var byName: [String: Tensor] = [:]
        for (name, t) in zip(node.inputs, args) where !name.isEmpty { byName[name] = t }
        let payload = try FusedPayload(node, constant: { byName[$0] })
        let x = try arg(0)
        func optional(_ c: Constant?) throws -> Tensor? { try c.map { try float($0.tensor) } }
        switch payload {
        case .stem(let op):
            let w = op.conv.weight.tensor
            let k = op.kernel, stride = op.stride, pad = op.pad, nhwc = op.nhwcInput
            guard x.shape.count == 4, stride > 0, pad >= 0, w.shape.count == 2,
                x.shape[nhwc ? 1 : 2] + 2 * pad >= k, x.shape[nhwc ? 2 : 3] + 2 * pad >= k, w.shape[0] == x.shape[nhwc ? 3 : 1] * k * k
            else {
                throw CNXError("input \(x.shape) does not fit a \(k)x\(k) stem with weight \(w.shape)")
            }
            let patches = self.patches(x, nhwc: nhwc, kernel: k, stride: stride, pad: pad)
            let y = try pointwise(patches, op.conv)
            activate(y, op.activation)
            return [
                op.norm.kind == .none
                    ? y : try norm(op.norm.kind, y, optional(op.norm.weight), optional(op.norm.bias), eps: op.norm.epsilon)
            ]
        case .downsample(let op):
            let w = op.conv.weight.tensor, k = op.kernel
            guard x.shape.count == 4, x.shape[1] % k == 0, x.shape[2] % k == 0, w.shape[0] == x.shape[3] * k * k else {
                throw CNXError("input \(x.shape) does not fit a \(k)x\(k) downsample with weight \(w.shape)")
            }
            let normed = try norm(op.norm.kind, x, optional(op.norm.weight), optional(op.norm.bias), eps: op.norm.epsilon)
            let patches = self.patches(normed, nhwc: true, kernel: k, stride: k, pad: 0)
            return [try pointwise(patches, op.conv)]
        case .block(let op):
            let onBF16 = op.depthwise.onBFloat16
            let dw = try onBF16 ? widened(op.depthwise.weight.tensor) : float(op.depthwise.weight.tensor)
            let dwb = try float(op.depthwise.bias.tensor)
            guard x.shape.count == 4, dw.shape.count == 3, dw.shape[0] == dw.shape[1], dw.shape[0] % 2 == 1, dw.shape[2] == x.shape[3],
                dwb.count == x.shape[3]
            else {
                throw CNXError("input \(x.shape) does not fit depthwise weight \(dw.shape)")
            }
            let t = Tensor(zeros: .float32, shape: x.shape)
            let (n, h, w, c, k) = (Int64(x.shape[0]), Int64(x.shape[1]), Int64(x.shape[2]), Int64(x.shape[3]), Int64(dw.shape[0]))
            withFloatPointers([x, dw, dwb]) { p in
                t.withUnsafeMutableFloats { tp in
                    if onBF16 {
                        // On bfloat16: the dot path's twin (inputs rounded, pairs of taps, float sums).
                        for b in 0..<n {
                            let image = b * h * w * c
                            cnx_dwconv_nhwc_rows_bf16_ref(p[0]! + Int(image), h, w, c, k, p[1], p[2], tp.baseAddress! + Int(image), 0, h)
                        }
                    } else {
                        cnx_dwconv_nhwc_f32(p[0], n, h, w, c, k, p[1], p[2], tp.baseAddress)
                    }
                }
            }
            let normed = try norm(op.norm.kind, t, nil, nil, eps: op.norm.epsilon)
            var hidden = try pointwise(normed, op.pw1)
            activate(hidden, op.activation)
            if let g = op.grn {
                hidden = try grn(hidden, try float(g.gamma.tensor), try float(g.beta.tensor), eps: g.epsilon)
            }
            let y = try pointwise(hidden, op.pw2)
            guard y.shape == x.shape else { throw CNXError("block output \(y.shape) differs from its input \(x.shape)") }
            x.withUnsafeFloats { xp in y.withUnsafeMutableFloats { yp in for i in 0..<yp.count { yp[i] += xp[i] } } }
            return [y]
        case .head(let op):
            guard x.shape.count == 4 else { throw CNXError("head input must be NHWC, got \(x.shape)") }
            let (n, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let gamma = try optional(op.norm.weight), beta = try optional(op.norm.bias)
            var features = Tensor(zeros: .float32, shape: [n, c])
            if op.normFirst {
                let normed = try norm(op.norm.kind, x, gamma, beta, eps: op.norm.epsilon)
                withFloatPointers([normed]) { p in
                    features.withUnsafeMutableFloats { cnx_reduce_middle_f32(p[0], Int64(n), Int64(h * wd), Int64(c), 0, $0.baseAddress) }
                }
            } else {
                withFloatPointers([x]) { p in
                    features.withUnsafeMutableFloats { cnx_reduce_middle_f32(p[0], Int64(n), Int64(h * wd), Int64(c), 0, $0.baseAddress) }
                }
                features = try norm(op.norm.kind, features, gamma, beta, eps: op.norm.epsilon)
            }
            if let fc1 = op.fc1 {
                features = try pointwise(features, fc1)
                activate(features, op.activation)
                if let fc2 = op.fc2 { features = try pointwise(features, fc2) }
            }
            return [features]
        }
    }

    /// A bfloat16 tensor's exact float32 values.
    static func widened(_ t: Tensor) throws -> Tensor {
        guard t.dtype == .bfloat16, let w = t.widenedHalf() else { throw CNXError("expects bfloat16, got \(t.dtype.name)") }
        return w
    }

    /// A `cnx.Linear` node's activation, checked.
    static func activation(_ node: Node) throws -> FusedActivation? {
        guard let name = node.string("activation") else { return nil }
        guard let a = FusedActivation(rawValue: name) else {
            throw CNXError("unknown activation '\(name)' (gelu, gelu_tanh, silu or gelu_quadratic)")
        }
        return a
    }

    /// x = act(x) in place with the activations' scalar specification (the `_ref` twin the
    /// fast kernels are tested against, so that int8 rounding boundaries fall where the fast
    /// epilogues put them).
    static func activate(_ x: Tensor, _ activation: FusedActivation?) {
        guard let activation else { return }
        x.withUnsafeMutableFloats { cnx_activation_inplace_f32_ref($0.baseAddress, Int64($0.count), activation.code) }
    }

    /// A norm over the last axis with optional scale and shift, in the reference arithmetic.
    static func norm(_ kind: FusedNormKind, _ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?, eps: Float) throws -> Tensor {
        switch kind {
        case .layer, .none:
            return try layerNormLast(x, gamma, beta, eps: eps)
        case .rms, .simple:
            let c = x.shape.last ?? 1
            if let beta, beta.count != c { throw CNXError("norm bias has \(beta.count) values for \(c) channels") }
            let y = try rowNorm(x, scale: gamma, from: max(0, x.shape.count - 1), eps: eps, kind: kind == .rms ? .rms : .simple)
            if let beta {
                beta.withUnsafeFloats { bp in
                    y.withUnsafeMutableFloats { yp in for r in 0..<(yp.count / max(c, 1)) { for j in 0..<c { yp[r * c + j] += bp[j] } } }
                }
            }
            return y
        }
    }

    /// The u8 codes of an int8 layer's (already equalized) float32 input, in the reference
    /// arithmetic (Formats/CNX.md, "int8 layers", step 2).
    package static func quantizeReference(_ x: Tensor, _ q: Int8Parameters) -> [UInt8] {
        var codes = [UInt8](repeating: 0, count: x.count)
        x.withUnsafeFloats { xp in
            codes.withUnsafeMutableBufferPointer {
                cnx_quantize_u8_reference(xp.baseAddress, Int64(xp.count), q.activationScale, q.activationZero, $0.baseAddress)
            }
        }
        return codes
    }

    /// A fused operation's GEMM layer: float32 as it is, or int8 as Formats/CNX.md's "int8
    /// layers" computes it (the input divided by the channel scales, quantized to u8, the exact
    /// integer product, dequantized with the two scales, plus the float32 bias).
    package static func pointwise(_ x: Tensor, _ layer: Linear) throws -> Tensor {
        let w = layer.weight.tensor
        let bias = try layer.bias.map { try float($0.tensor) }
        switch layer.precision {
        case .float32:
            return try linear(x, try float(w), bias)
        case .bfloat16, .float16:
            // Half weights: their exact float32 values, float32 arithmetic.
            guard let wide = w.widenedHalf() else { throw CNXError("weight \(w.dtype.name) is not a half-precision tensor") }
            return try linear(x, wide, bias)
        case .int8(let q):
            guard w.dtype == .int8, w.shape.count == 2, let k = x.shape.last, k == w.shape[0] else {
                throw CNXError("int8 weight \(w.dtype.name) \(w.shape) does not fit input \(x.shape)")
            }
            let n = w.shape[1], rows = x.count / max(k, 1)
            var input = x
            if let s = q.channelScales {
                input = Tensor(zeros: .float32, shape: x.shape)
                x.withUnsafeFloats { src in input.withUnsafeMutableFloats { dst in for i in 0..<src.count { dst[i] = src[i] / s[i % k] } } }
            }
            var codes = quantizeReference(input, q)
            let y = Tensor(zeros: .float32, shape: Array(x.shape.dropLast()) + [n])
            withFloatPointers([bias]) { p in
                codes.withUnsafeMutableBufferPointer { codeBuffer in
                    let c = codeBuffer.baseAddress!
                    w.withUnsafeElementBytes { wb in
                        q.weightScales.withUnsafeBufferPointer { scales in
                            y.withUnsafeMutableFloats { yp in
                                cnx_qlinear_reference(
                                    Int64(rows), Int64(n), Int64(k), c, wb.baseAddress!.assumingMemoryBound(to: Int8.self),
                                    q.activationZero, q.activationScale, scales.baseAddress, p[0], yp.baseAddress)
                            }
                        }
                    }
                }
            }
            return y
        }
    }

    /// x[..., K] · w[K, N] + b.
    static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) throws -> Tensor {
        guard w.shape.count == 2, let k = x.shape.last, k == w.shape[0] else {
            throw CNXError("input \(x.shape) does not fit weight \(w.shape)")
        }
        let n = w.shape[1], rows = x.count / max(k, 1)
        if let b, b.count != n { throw CNXError("bias has \(b.count) values for \(n) outputs") }
        let y = Tensor(zeros: .float32, shape: Array(x.shape.dropLast()) + [n])
        withFloatPointers([x, w, b]) { p in
            y.withUnsafeMutableFloats { yp in
                if let bp = p[2] {
                    for r in 0..<rows { (yp.baseAddress! + r * n).update(from: bp, count: n) }
                }
                cnx_sgemm(
                    0, 0, Int64(rows), Int64(n), Int64(k), 1, p[0], Int64(k), p[1], Int64(n), b == nil ? 0 : 1, yp.baseAddress, Int64(n))
            }
        }
        return y
    }

    static func layerNormLast(_ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?, eps: Float) throws -> Tensor {
        let c = x.shape.last ?? 1
        if let gamma, gamma.count != c { throw CNXError("LayerNorm scale has \(gamma.count) values for \(c) channels") }
        if let beta, beta.count != c { throw CNXError("LayerNorm bias has \(beta.count) values for \(c) channels") }
        let y = Tensor(zeros: .float32, shape: x.shape)
        withFloatPointers([x, gamma, beta]) { p in
            y.withUnsafeMutableFloats {
                cnx_layernorm_lastaxis_f32(p[0], Int64(x.count / max(c, 1)), Int64(c), p[1], p[2], eps, $0.baseAddress)
            }
        }
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
        withFloatPointers([x, gamma, beta]) { p in
            let (xp, gp, bp) = (p[0]!, p[1]!, p[2]!)
            norms.withUnsafeMutableFloats { nb in
                y.withUnsafeMutableFloats { yb in
                    cnx_reduce_middle_f32(xp, Int64(n), Int64(hw), Int64(c), 1, nb.baseAddress)
                    for b in 0..<n {
                        let g = nb.baseAddress! + b * c
                        var mean: Float = 0
                        for i in 0..<c { mean += g[i] }
                        mean /= Float(c)
                        for q in 0..<hw {
                            let row = (b * hw + q) * c
                            for i in 0..<c { yb[row + i] = gp[i] * (xp[row + i] * (g[i] / (mean + eps))) + bp[i] + xp[row + i] }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// Read-only float pointers to `tensors` (nil stays nil), valid only inside `body`.
package func withFloatPointers<R>(_ tensors: [Tensor?], _ body: ([UnsafePointer<Float>?]) throws -> R) rethrows -> R {
    var pointers: [UnsafePointer<Float>?] = []
    pointers.reserveCapacity(tensors.count)
    return try withFloatPointers(tensors[...], collecting: &pointers, body)
}

/// `withFloatPointers`: each tensor's scope nests the next one's, the innermost calls `body`.
private func withFloatPointers<R>(
    _ tensors: ArraySlice<Tensor?>, collecting pointers: inout [UnsafePointer<Float>?], _ body: ([UnsafePointer<Float>?]) throws -> R
) rethrows -> R {
    guard let first = tensors.first else { return try body(pointers) }
    guard let t = first else {
        pointers.append(nil)
        return try withFloatPointers(tensors.dropFirst(), collecting: &pointers, body)
    }
    return try t.storage.withUnsafeBytes { raw in
        pointers.append(raw.baseAddress?.assumingMemoryBound(to: Float.self))
        return try withFloatPointers(tensors.dropFirst(), collecting: &pointers, body)
    }
}
