import CKernels
import CNXGraph
import CReferenceKernels
import Foundation

/// The reference implementation of every operator, following the ONNX operator specification.
/// `ReferenceKernels.table` binds each op type to its kernel here (or in FusedKernels).
package enum Kernels {
    /// Evaluates `node` through the kernel table.
    package static func evaluate(_ node: Node, _ args: [Tensor?]) throws -> [Tensor] {
        try ReferenceKernels.evaluate(node, args)
    }

    // MARK: kernels the table calls with the whole node

    static func erf(_ x: Tensor) throws -> Tensor {
        let y = Tensor(zeros: .float32, shape: x.shape)
        x.withUnsafeFloats { xp in
            y.withUnsafeMutableFloats { yp in cnx_erf_f32(xp.baseAddress, yp.baseAddress, Int64(x.count)) }
        }
        return y
    }

    static func gelu(_ call: KernelCall) throws -> Tensor {
        let x = try call.float("X")
        let approximate = call.node.string("approximate") ?? "none"
        guard approximate == "none" || approximate == "tanh" else {
            throw CNXError("unknown approximate '\(approximate)'")
        }
        let y = Tensor(zeros: .float32, shape: x.shape)
        x.withUnsafeFloats { xp in
            y.withUnsafeMutableFloats { yp in
                cnx_gelu_f32(xp.baseAddress, yp.baseAddress, Int64(x.count), approximate == "tanh" ? 1 : 0)
            }
        }
        return y
    }

    static func rmsNormalization(_ call: KernelCall) throws -> Tensor {
        let x = try call.float("X")
        let axis = try normalizeAxis(call.node.int("axis") ?? -1, rank: x.shape.count)
        return try rowNorm(x, scale: call.float("scale"), from: axis, eps: call.node.float("epsilon") ?? 1e-5, kind: .rms)
    }

    static func simpleNorm(_ call: KernelCall) throws -> Tensor {
        let x = try call.float("X")
        return try rowNorm(
            x, scale: call.float("scale"), from: max(0, x.shape.count - 1), eps: call.node.float("epsilon") ?? 1e-5, kind: .simple)
    }

    static func layerNormalization(_ call: KernelCall) throws -> Tensor {
        let node = call.node
        if node.outputs.count > 1 && node.outputs[1...].contains(where: { !$0.isEmpty }) {
            throw CNXError("the optional Mean and InvStdDev outputs are not supported")
        }
        return try layerNorm(node, call.float("X"), call.optionalFloat("Scale"), call.optionalFloat("B"))
    }

    static func globalAveragePool(_ x: Tensor) throws -> Tensor {
        guard x.shape.count >= 3 else { throw CNXError("needs rank 3 or more, got \(x.shape)") }
        let outer = x.shape[0] * x.shape[1], inner = x.shape[2...].reduce(1, *)
        let y = Tensor(zeros: .float32, shape: Array(x.shape[0..<2]) + Array(repeating: 1, count: x.shape.count - 2))
        x.withUnsafeFloats { xp in
            y.withUnsafeMutableFloats { yp in cnx_reduce_middle_f32(xp.baseAddress, Int64(outer), Int64(inner), 1, 0, yp.baseAddress) }
        }
        return y
    }

    static func flatten(_ x: Tensor, axis raw: Int) throws -> Tensor {
        let axis = raw < 0 ? raw + x.shape.count : raw
        guard axis >= 0 && axis <= x.shape.count else { throw CNXError("axis out of range for \(x.shape)") }
        return x.reshaped([x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])
    }

    static func squeeze(_ call: KernelCall) throws -> Tensor {
        let x = try call.input("data")
        let axes = try call.optional("axes").map { try ints($0, "axes") } ?? call.node.ints("axes")
        var shape: [Int] = []
        let rank = x.shape.count
        let normalized = try Set((axes ?? []).map { try normalizeAxis($0, rank: rank) })
        for (i, d) in x.shape.enumerated() {
            if let _ = axes {
                if normalized.contains(i) {
                    guard d == 1 else { throw CNXError("cannot squeeze axis \(i) of size \(d)") }
                    continue
                }
            } else if d == 1 {
                continue
            }
            shape.append(d)
        }
        return x.reshaped(shape)
    }

    static func unsqueeze(_ call: KernelCall) throws -> Tensor {
        let x = try call.input("data")
        guard let axes = try call.optional("axes").map({ try ints($0, "axes") }) ?? call.node.ints("axes") else {
            throw CNXError("no axes")
        }
        let rank = x.shape.count + axes.count
        let normalized = try Set(axes.map { try normalizeAxis($0, rank: rank) })
        guard normalized.count == axes.count else { throw CNXError("repeated axes \(axes)") }
        var shape: [Int] = []
        var source = x.shape.makeIterator()
        for i in 0..<rank { shape.append(normalized.contains(i) ? 1 : source.next() ?? 1) }
        return x.reshaped(shape)
    }

    static func shape(_ call: KernelCall) throws -> Tensor {
        let x = try call.input("data")
        let rank = x.shape.count
        var start = call.node.int("start") ?? 0, end = call.node.int("end") ?? rank
        if start < 0 { start += rank }
        if end < 0 { end += rank }
        start = min(max(start, 0), rank)
        end = min(max(end, start), rank)
        return Tensor(int64s: x.shape[start..<end].map { Int64($0) }, shape: [end - start])
    }

    static func slice(_ call: KernelCall) throws -> Tensor {
        let x = try call.input("data")
        if call.values.count >= 3 {
            let starts = try ints(call.input("starts"), "starts"), ends = try ints(call.input("ends"), "ends")
            let axes = try call.optional("axes").map { try ints($0, "axes") }
            let steps = try call.optional("steps").map { try ints($0, "steps") }
            return try slice(x, starts: starts, ends: ends, axes: axes, steps: steps)
        }
        guard let starts = call.node.ints("starts"), let ends = call.node.ints("ends") else { throw CNXError("no starts/ends") }
        return try slice(x, starts: starts, ends: ends, axes: call.node.ints("axes"), steps: nil)
    }

    static func expand(_ x: Tensor, _ shape: [Int]) throws -> Tensor {
        guard let out = broadcastShapes(x.shape, shape) else { throw CNXError("cannot expand \(x.shape) to \(shape)") }
        return materialize(x, to: out)
    }

    static func constantOfShape(_ call: KernelCall) throws -> Tensor {
        let shape = try ints(call.input("input"), "shape")
        guard shape.allSatisfy({ $0 >= 0 }), let n = checkedElementCount(shape), n <= 1 << 31 else {
            throw CNXError("invalid shape \(shape)")
        }
        if case .tensor(let v)? = call.node.attributes["value"], v.count == 1 {
            let out = Tensor(zeros: v.dtype, shape: shape)
            v.withUnsafeElementBytes { value in
                out.withUnsafeMutableElementBytes { bytes in
                    for i in 0..<n { (bytes.baseAddress! + i * v.dtype.size).copyMemory(from: value.baseAddress!, byteCount: v.dtype.size) }
                }
            }
            return out
        }
        return Tensor(zeros: .float32, shape: shape)
    }

    static func range(_ start: Tensor, _ limit: Tensor, _ delta: Tensor) throws -> Tensor {
        guard start.count == 1, limit.count == 1, delta.count == 1, start.dtype == limit.dtype, start.dtype == delta.dtype else {
            throw CNXError("start, limit and delta must be scalars of one type")
        }
        if start.dtype == .int64 {
            let s = start.int64s[0], l = limit.int64s[0], d = delta.int64s[0]
            guard d != 0 else { throw CNXError("delta is 0") }
            let n = max(0, Int((Double(l) - Double(s)) / Double(d)).advanced(by: (l - s) % d == 0 ? 0 : 1))
            guard n <= 1 << 24 else { throw CNXError("range of \(n) elements refused") }
            return Tensor(int64s: (0..<n).map { s + Int64($0) * d }, shape: [n])
        }
        let s = try float(start).floats[0], l = try float(limit).floats[0], d = try float(delta).floats[0]
        let count = ceil((l - s) / d)
        guard d != 0, count.isFinite, count <= Float(1 << 24) else { throw CNXError("invalid range") }
        let n = max(0, Int(count))
        return Tensor(floats: (0..<n).map { s + Float($0) * d }, shape: [n])
    }

    // MARK: helpers

    static func float(_ t: Tensor) throws -> Tensor {
        guard t.dtype == .float32 else { throw CNXError("expects float32, got \(t.dtype.name)") }
        return t
    }

    static func ints(_ t: Tensor, _ what: String) throws -> [Int] {
        guard t.dtype == .int64 else { throw CNXError("\(what) must be int64, got \(t.dtype.name)") }
        return t.int64s.map { Int($0) }
    }

    /// `body` with `t`'s float32 elements, or with nil when there is no `t`.
    static func withFloats<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let t else { return try body(nil) }
        return try t.withUnsafeFloats { try body($0.baseAddress) }
    }

    static func normalizeAxis(_ axis: Int, rank: Int) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0 && a < rank else { throw CNXError("axis \(axis) out of range for rank \(rank)") }
        return a
    }

    static func unary(_ x: Tensor, _ f: (Float) -> Float) throws -> Tensor {
        let x = try float(x)
        let y = Tensor(zeros: .float32, shape: x.shape)
        x.withUnsafeFloats { xp in
            y.withUnsafeMutableFloats { yp in
                for i in 0..<x.count { yp[i] = f(xp[i]) }
            }
        }
        return y
    }

    static func binary(_ op: OpType, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw CNXError("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        if a.dtype == .int64 && b.dtype == .int64 {
            let y = Tensor(zeros: .int64, shape: shape)
            var failure: CNXError?
            a.withUnsafeInt64s { ab in
                b.withUnsafeInt64s { bb in
                    y.withUnsafeMutableInt64s { yb in
                        let ap = ab.baseAddress!, bp = bb.baseAddress!, yp = yb.baseAddress!
                        forEachBroadcastRow(shape, sa, sb) { oa, ob, oy, n, ia, ib in
                            for i in 0..<n {
                                let u = ap[oa + i * ia], v = bp[ob + i * ib]
                                switch op {
                                case .add: yp[oy + i] = u &+ v
                                case .sub: yp[oy + i] = u &- v
                                case .mul: yp[oy + i] = u &* v
                                case .div:
                                    if v == 0 { failure = CNXError("integer division by zero"); return }
                                    yp[oy + i] = u / v
                                default: failure = CNXError("\(op.rawValue) on int64 is not supported"); return
                                }
                            }
                        }
                    }
                }
            }
            if let failure { throw failure }
            return y
        }
        let a = try float(a), b = try float(b)
        let y = Tensor(zeros: .float32, shape: shape)
        a.withUnsafeFloats { ab in
            b.withUnsafeFloats { bb in
                y.withUnsafeMutableFloats { yb in
                    let ap = ab.baseAddress!, bp = bb.baseAddress!, yp = yb.baseAddress!
                    forEachBroadcastRow(shape, sa, sb) { oa, ob, oy, n, ia, ib in
                        switch op {
                        case .add: for i in 0..<n { yp[oy + i] = ap[oa + i * ia] + bp[ob + i * ib] }
                        case .sub: for i in 0..<n { yp[oy + i] = ap[oa + i * ia] - bp[ob + i * ib] }
                        case .mul: for i in 0..<n { yp[oy + i] = ap[oa + i * ia] * bp[ob + i * ib] }
                        case .div: for i in 0..<n { yp[oy + i] = ap[oa + i * ia] / bp[ob + i * ib] }
                        default:
                            for i in 0..<n {
                                let u = ap[oa + i * ia], v = bp[ob + i * ib]
                                yp[oy + i] = v == 2 ? u * u : powf(u, v)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    static func conv(_ node: Node, _ x: Tensor, _ w: Tensor, _ b: Tensor?) throws -> Tensor {
        guard x.shape.count == 4, w.shape.count == 4 else {
            throw CNXError("only 2-D convolution is supported (input \(x.shape), weight \(w.shape))")
        }
        let group = node.int("group") ?? 1
        let kernel = node.ints("kernel_shape") ?? Array(w.shape[2...])
        let strides = node.ints("strides") ?? [1, 1]
        let dilations = node.ints("dilations") ?? [1, 1]
        var pads = node.ints("pads") ?? [0, 0, 0, 0]
        guard kernel.count == 2, strides.count == 2, dilations.count == 2, pads.count == 4,
            kernel == Array(w.shape[2...]), strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }),
            pads.allSatisfy({ $0 >= 0 }), group > 0
        else {
            throw CNXError(
                "invalid attributes (kernel_shape \(kernel), strides \(strides), pads \(pads), dilations \(dilations), group \(group)) for weight \(w.shape)"
            )
        }
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let m = w.shape[0]
        guard c % group == 0, m % group == 0, w.shape[1] == c / group else {
            throw CNXError("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
        }
        if let b, b.count != m { throw CNXError("bias has \(b.count) values for \(m) output channels") }
        let autoPad = node.string("auto_pad") ?? "NOTSET"
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            for (i, size) in [h, wd].enumerated() {
                let out = (size + strides[i] - 1) / strides[i]
                let total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
                let small = total / 2, large = total - small
                pads[i] = autoPad == "SAME_UPPER" ? small : large
                pads[i + 2] = autoPad == "SAME_UPPER" ? large : small
            }
        } else if autoPad == "VALID" {
            pads = [0, 0, 0, 0]
        } else if autoPad != "NOTSET" {
            throw CNXError("unknown auto_pad '\(autoPad)'")
        }
        let oh = (h + pads[0] + pads[2] - dilations[0] * (kernel[0] - 1) - 1) / strides[0] + 1
        let ow = (wd + pads[1] + pads[3] - dilations[1] * (kernel[1] - 1) - 1) / strides[1] + 1
        guard oh > 0, ow > 0 else { throw CNXError("input \(x.shape) is smaller than the kernel \(kernel)") }
        var s = cnx_conv2d_shape(
            n: Int64(n), c: Int64(c), h: Int64(h), w: Int64(wd), m: Int64(m),
            kh: Int64(kernel[0]), kw: Int64(kernel[1]), sh: Int64(strides[0]), sw: Int64(strides[1]),
            dh: Int64(dilations[0]), dw: Int64(dilations[1]),
            pt: Int64(pads[0]), pl: Int64(pads[1]), pb: Int64(pads[2]), pr: Int64(pads[3]),
            groups: Int64(group), oh: Int64(oh), ow: Int64(ow))
        let y = Tensor(zeros: .float32, shape: [n, m, oh, ow])
        let scratchCount = cnx_conv2d_scratch_floats(&s)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(scratchCount, 1))
        defer { scratch.deallocate() }
        x.withUnsafeFloats { xp in
            w.withUnsafeFloats { wp in
                withFloats(b) { bp in
                    y.withUnsafeMutableFloats { yp in
                        cnx_conv2d_f32(&s, xp.baseAddress, wp.baseAddress, bp, yp.baseAddress, scratch)
                    }
                }
            }
        }
        return y
    }

    static func matMul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        var aShape = a.shape, bShape = b.shape
        guard !aShape.isEmpty, !bShape.isEmpty else { throw CNXError("MatMul of a scalar") }
        let aVector = aShape.count == 1, bVector = bShape.count == 1
        if aVector { aShape = [1] + aShape }
        if bVector { bShape = bShape + [1] }
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
        let k2 = bShape[bShape.count - 2], n = bShape[bShape.count - 1]
        guard k == k2 else { throw CNXError("inner dimensions differ: \(a.shape) x \(b.shape)") }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        guard let batch = broadcastShapes(aBatch, bBatch) else {
            throw CNXError("batch dimensions do not broadcast: \(a.shape) x \(b.shape)")
        }
        var outShape = batch + [m, n]
        let y = Tensor(zeros: .float32, shape: outShape)
        if bBatch.reduce(1, *) == 1 {
            // The weight is shared: one GEMM over every row of A (A's batch folds into M).
            let rows = aBatch.reduce(1, *) * m
            if batch == aBatch || aBatch.reduce(1, *) == batch.reduce(1, *) {
                a.withUnsafeFloats { ap in
                    b.withUnsafeFloats { bp in
                        y.withUnsafeMutableFloats { yp in
                            cnx_sgemm(
                                0, 0, Int64(rows), Int64(n), Int64(k), 1, ap.baseAddress, Int64(k), bp.baseAddress, Int64(n), 0,
                                yp.baseAddress, Int64(n))
                        }
                    }
                }
                if aVector { outShape.remove(at: outShape.count - 2) }
                if bVector { outShape.removeLast() }
                return y.reshaped(outShape)
            }
        }
        let sa = broadcastStrides(aBatch, to: batch), sb = broadcastStrides(bBatch, to: batch)
        // One GEMM per batch entry, the batch axes walked with broadcasting.
        a.withUnsafeFloats { ab in
            b.withUnsafeFloats { bb in
                y.withUnsafeMutableFloats { yb in
                    forEachBroadcastRow(batch, sa, sb) { oa, ob, oy, count, ia, ib in
                        for j in 0..<count {
                            cnx_sgemm(
                                0, 0, Int64(m), Int64(n), Int64(k), 1, ab.baseAddress! + (oa + j * ia) * m * k, Int64(k),
                                bb.baseAddress! + (ob + j * ib) * k * n, Int64(n), 0, yb.baseAddress! + (oy + j) * m * n, Int64(n))
                        }
                    }
                }
            }
        }
        if aVector { outShape.remove(at: outShape.count - 2) }
        if bVector { outShape.removeLast() }
        return y.reshaped(outShape)
    }

    static func gemm(_ node: Node, _ a: Tensor, _ b: Tensor, _ c: Tensor?) throws -> Tensor {
        guard a.shape.count == 2, b.shape.count == 2 else { throw CNXError("Gemm needs 2-D inputs, got \(a.shape) and \(b.shape)") }
        let ta = node.int("transA") ?? 0, tb = node.int("transB") ?? 0
        let alpha = node.float("alpha") ?? 1, beta = node.float("beta") ?? 1
        let m = ta != 0 ? a.shape[1] : a.shape[0], k = ta != 0 ? a.shape[0] : a.shape[1]
        let k2 = tb != 0 ? b.shape[1] : b.shape[0], n = tb != 0 ? b.shape[0] : b.shape[1]
        guard k == k2 else { throw CNXError("inner dimensions differ: \(a.shape) x \(b.shape)") }
        var y = Tensor(zeros: .float32, shape: [m, n])
        var betaUsed: Float = 0
        if let c, beta != 0 {
            guard broadcastShapes(c.shape, [m, n]) == [m, n] else { throw CNXError("C \(c.shape) does not broadcast to [\(m), \(n)]") }
            y = materialize(c, to: [m, n]).copy()
            betaUsed = beta
        }
        a.withUnsafeFloats { ap in
            b.withUnsafeFloats { bp in
                y.withUnsafeMutableFloats { yp in
                    cnx_sgemm(
                        Int32(ta != 0 ? 1 : 0), Int32(tb != 0 ? 1 : 0), Int64(m), Int64(n), Int64(k), alpha,
                        ap.baseAddress, Int64(a.shape[1]), bp.baseAddress, Int64(b.shape[1]), betaUsed, yp.baseAddress, Int64(n))
                }
            }
        }
        return y
    }

    static func reduce(_ node: Node, _ x: Tensor, axesInput: Tensor?) throws -> Tensor {
        let rank = x.shape.count
        var axes = try axesInput.map { try ints($0, "axes") } ?? node.ints("axes") ?? []
        if axes.isEmpty {
            if node.int("noop_with_empty_axes") == 1 { return x }
            axes = Array(0..<rank)
        }
        let normalized = Set(try axes.map { try normalizeAxis($0, rank: rank) }).sorted(by: >)
        let keep = (node.int("keepdims") ?? 1) != 0
        let code: Int32 = node.op == .reduceMean ? 0 : node.op == .reduceL2 ? 1 : 2
        var current = x
        // Reducing one axis at a time gives the same mean, sum and L2 norm as reducing them together.
        for axis in normalized {
            let outer = current.shape[..<axis].reduce(1, *), size = current.shape[axis]
            let inner = current.shape[(axis + 1)...].reduce(1, *)
            var shape = current.shape
            shape[axis] = 1
            let y = Tensor(zeros: .float32, shape: shape)
            current.withUnsafeFloats { xp in
                y.withUnsafeMutableFloats { yp in
                    cnx_reduce_middle_f32(xp.baseAddress, Int64(outer), Int64(size), Int64(inner), code, yp.baseAddress)
                }
            }
            current = y
        }
        if !keep {
            current = current.reshaped(current.shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element))
        }
        return current
    }

    /// ReduceProd over float32 or int64 (the legacy exporter multiplies shape entries with it).
    static func reduceProduct(_ node: Node, _ x: Tensor, axesInput: Tensor?) throws -> Tensor {
        guard x.dtype == .float32 || x.dtype == .int64 else { throw CNXError("expects float32 or int64, got \(x.dtype.name)") }
        let rank = x.shape.count
        var axes = try axesInput.map { try ints($0, "axes") } ?? node.ints("axes") ?? []
        if axes.isEmpty {
            if node.int("noop_with_empty_axes") == 1 { return x }
            axes = Array(0..<rank)
        }
        let reduced = Set(try axes.map { try normalizeAxis($0, rank: rank) })
        let keep = (node.int("keepdims") ?? 1) != 0
        let kept = x.shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let outShape = keep ? kept : x.shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
        let count = kept.reduce(1, *)
        var strides = [Int](repeating: 1, count: rank)
        for k in stride(from: rank - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * x.shape[k + 1] }
        var keptStrides = [Int](repeating: 1, count: rank)
        for k in stride(from: rank - 2, through: 0, by: -1) { keptStrides[k] = keptStrides[k + 1] * kept[k + 1] }
        // Output index of every input element: its coordinates with the reduced axes at 0.
        func target(_ i: Int) -> Int {
            var o = 0
            for k in 0..<rank where !reduced.contains(k) { o += (i / strides[k] % x.shape[k]) * keptStrides[k] }
            return o
        }
        if x.dtype == .int64 {
            var out = [Int64](repeating: 1, count: count)
            x.withUnsafeInt64s { xp in for i in 0..<x.count { out[target(i)] = out[target(i)] &* xp[i] } }
            return Tensor(int64s: out, shape: outShape)
        }
        var out = [Float](repeating: 1, count: count)
        x.withUnsafeFloats { xp in for i in 0..<x.count { out[target(i)] *= xp[i] } }
        return Tensor(floats: out, shape: outShape)
    }

    /// The normalisations that have no centring of the output: RMS (x / sqrt(mean x² + eps)) and
    /// SimpleNorm (x / sqrt(var x + eps), the unbiased variance). Statistics in double.
    enum RowNorm { case rms, simple }

    /// `kind` over the axes from `axis` on, times `scale` (broadcast to those axes).
    static func rowNorm(_ x: Tensor, scale: Tensor?, from axis: Int, eps: Float, kind: RowNorm) throws -> Tensor {
        let cols = x.shape[axis...].reduce(1, *), rows = x.count / max(cols, 1)
        let normShape = Array(x.shape[axis...])
        var g: Tensor?
        if let scale {
            guard broadcastShapes(scale.shape, normShape) == normShape else {
                throw CNXError("scale \(scale.shape) does not broadcast to the normalised shape \(normShape)")
            }
            g = scale.count == cols ? scale : materialize(scale, to: normShape)
        }
        let y = Tensor(zeros: .float32, shape: x.shape)
        x.withUnsafeFloats { xp in
            withFloats(g) { gp in
                y.withUnsafeMutableFloats { yp in
                    rowNormRows(xp.baseAddress!, rows: rows, cols: cols, eps: eps, kind: kind, scale: gp, into: yp.baseAddress!)
                }
            }
        }
        return y
    }

    static func rowNormRows(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, eps: Float, kind: RowNorm,
        scale: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let xr = x + r * cols, yr = y + r * cols
            var sum = 0.0, squares = 0.0
            for c in 0..<cols {
                sum += Double(xr[c])
                squares += Double(xr[c]) * Double(xr[c])
            }
            let n = Double(max(cols, 1))
            var stat = squares / n
            if kind == .simple {
                let mean = sum / n
                var v = 0.0
                for c in 0..<cols { v += (Double(xr[c]) - mean) * (Double(xr[c]) - mean) }
                stat = v / (n - 1)
            }
            let inv = Float(1 / (stat + Double(eps)).squareRoot())
            for c in 0..<cols { yr[c] = xr[c] * inv * (scale?[c] ?? 1) }
        }
    }

    static func layerNorm(_ node: Node, _ x: Tensor, _ scale: Tensor?, _ bias: Tensor?) throws -> Tensor {
        let rank = x.shape.count
        let axis = try normalizeAxis(node.int("axis") ?? -1, rank: rank)
        let eps = node.float("epsilon") ?? 1e-5
        let rows = x.shape[..<axis].reduce(1, *), cols = x.shape[axis...].reduce(1, *)
        let normShape = Array(x.shape[axis...])
        func expanded(_ t: Tensor?) throws -> Tensor? {
            guard let t else { return nil }
            guard broadcastShapes(t.shape, normShape) == normShape else {
                throw CNXError("scale/bias \(t.shape) does not broadcast to the normalised shape \(normShape)")
            }
            return t.count == cols ? t : materialize(t, to: normShape)
        }
        let g = try expanded(scale), b = try expanded(bias)
        let y = Tensor(zeros: .float32, shape: x.shape)
        x.withUnsafeFloats { xp in
            withFloats(g) { gp in
                withFloats(b) { bp in
                    y.withUnsafeMutableFloats { yp in
                        cnx_layernorm_lastaxis_f32(xp.baseAddress, Int64(rows), Int64(cols), gp, bp, eps, yp.baseAddress)
                    }
                }
            }
        }
        return y
    }

    /// A copy of `x` broadcast to `shape`.
    static func materialize(_ x: Tensor, to shape: [Int]) -> Tensor {
        if x.shape == shape { return x }
        return strided(x, shape, strides: broadcastStrides(x.shape, to: shape))
    }

    static func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor {
        let rank = x.shape.count
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw CNXError("invalid perm \(perm) for \(x.shape)") }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
        return strided(x, perm.map { x.shape[$0] }, strides: perm.map { inStrides[$0] })
    }

    /// A new tensor of `shape` whose element at each index is the element of `x` at the offset
    /// `strides` give that index (0 along an axis `x` is broadcast on, permuted for a transpose).
    private static func strided(_ x: Tensor, _ shape: [Int], strides: [Int]) -> Tensor {
        let y = Tensor(zeros: x.dtype, shape: shape)
        let zero = [Int](repeating: 0, count: shape.count)
        if x.dtype == .float32 {
            x.withUnsafeFloats { xb in
                y.withUnsafeMutableFloats { yb in
                    let src = xb.baseAddress!, dst = yb.baseAddress!
                    forEachBroadcastRow(shape, strides, zero) { ox, _, oy, n, ix, _ in
                        for i in 0..<n { dst[oy + i] = src[ox + i * ix] }
                    }
                }
            }
        } else {
            let size = x.dtype.size
            x.withUnsafeElementBytes { xb in
                y.withUnsafeMutableElementBytes { yb in
                    let src = xb.baseAddress!, dst = yb.baseAddress!
                    forEachBroadcastRow(shape, strides, zero) { ox, _, oy, n, ix, _ in
                        for i in 0..<n { (dst + (oy + i) * size).copyMemory(from: src + (ox + i * ix) * size, byteCount: size) }
                    }
                }
            }
        }
        return y
    }

    static func reshape(_ x: Tensor, _ spec: [Int], allowZero: Bool) throws -> Tensor {
        var shape = spec
        var inferred: Int?
        for (i, d) in spec.enumerated() {
            if d == 0 && !allowZero {
                guard i < x.shape.count else { throw CNXError("shape \(spec) copies a dimension \(x.shape) lacks") }
                shape[i] = x.shape[i]
            } else if d == -1 {
                guard inferred == nil else { throw CNXError("shape \(spec) has two -1") }
                inferred = i
            } else if d < 0 {
                throw CNXError("invalid shape \(spec)")
            }
        }
        if let i = inferred {
            shape[i] = 1
            let known = shape.reduce(1, *)
            guard known > 0, x.count % known == 0 else { throw CNXError("cannot reshape \(x.shape) to \(spec)") }
            shape[i] = x.count / known
        }
        guard checkedElementCount(shape) == x.count else { throw CNXError("cannot reshape \(x.shape) to \(spec)") }
        return x.reshaped(shape)
    }

    package static func concat(_ parts: [Tensor], axis: Int) throws -> Tensor {
        guard let first = parts.first else { throw CNXError("no inputs") }
        let rank = first.shape.count
        let a = try normalizeAxis(axis, rank: rank)
        var shape = first.shape
        shape[a] = 0
        for p in parts {
            guard p.dtype == first.dtype, p.shape.count == rank else { throw CNXError("inputs differ in type or rank") }
            for d in 0..<rank where d != a && p.shape[d] != first.shape[d] {
                throw CNXError("shapes \(first.shape) and \(p.shape) differ outside axis \(a)")
            }
            shape[a] += p.shape[a]
        }
        let y = Tensor(zeros: first.dtype, shape: shape)
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
        let size = first.dtype.size
        var offset = 0
        y.withUnsafeMutableElementBytes { yb in
            for p in parts {
                let chunk = p.shape[a] * inner * size
                p.withUnsafeElementBytes { pb in
                    for o in 0..<outer {
                        (yb.baseAddress! + o * shape[a] * inner * size + offset).copyMemory(
                            from: pb.baseAddress! + o * chunk, byteCount: chunk)
                    }
                }
                offset += chunk
            }
        }
        return y
    }

    static func gather(_ data: Tensor, _ indices: Tensor, axis: Int) throws -> Tensor {
        let rank = data.shape.count
        let a = try normalizeAxis(axis, rank: rank)
        let idx = try ints(indices, "indices")
        let size = data.shape[a]
        let outShape = Array(data.shape[..<a]) + indices.shape + Array(data.shape[(a + 1)...])
        let y = Tensor(zeros: data.dtype, shape: outShape)
        let outer = data.shape[..<a].reduce(1, *), inner = data.shape[(a + 1)...].reduce(1, *)
        let chunk = inner * data.dtype.size
        try data.withUnsafeElementBytes { src in
            try y.withUnsafeMutableElementBytes { dst in
                for o in 0..<outer {
                    for (j, raw) in idx.enumerated() {
                        let i = raw < 0 ? raw + size : raw
                        guard i >= 0 && i < size else { throw CNXError("index \(raw) out of range for axis of size \(size)") }
                        (dst.baseAddress! + (o * idx.count + j) * chunk).copyMemory(
                            from: src.baseAddress! + (o * size + i) * chunk, byteCount: chunk)
                    }
                }
            }
        }
        return y
    }

    static func slice(_ x: Tensor, starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?) throws -> Tensor {
        let rank = x.shape.count
        let axes = try (axes ?? Array(0..<starts.count)).map { try normalizeAxis($0, rank: rank) }
        let steps = steps ?? [Int](repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw CNXError("starts, ends, axes and steps differ in length")
        }
        var begin = [Int](repeating: 0, count: rank), step = [Int](repeating: 1, count: rank)
        var shape = x.shape
        for (k, axis) in axes.enumerated() {
            let dim = x.shape[axis], s = steps[k]
            guard s != 0 else { throw CNXError("slice step 0") }
            func clamp(_ v: Int, _ lo: Int, _ hi: Int) -> Int { min(max(v, lo), hi) }
            var b = starts[k] < 0 ? starts[k] &+ dim : starts[k]
            var e = ends[k] < 0 ? ends[k] &+ dim : ends[k]
            if s > 0 { b = clamp(b, 0, dim); e = clamp(e, 0, dim) } else { b = clamp(b, 0, dim - 1); e = clamp(e, -1, dim - 1) }
            let n = s > 0 ? max(0, (e - b + s - 1) / s) : max(0, (b - e + (-s) - 1) / (-s))
            begin[axis] = b
            step[axis] = s
            shape[axis] = n
        }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
        let y = Tensor(zeros: x.dtype, shape: shape)
        guard y.count > 0 else { return y }
        let size = x.dtype.size
        let base = zip(begin, inStrides).map(*).reduce(0, +)
        let strides = zip(step, inStrides).map(*)
        x.withUnsafeElementBytes { xb in
            y.withUnsafeMutableElementBytes { yb in
                let src = xb.baseAddress!, dst = yb.baseAddress!
                forEachBroadcastRow(shape, strides, [Int](repeating: 0, count: rank)) { ox, _, oy, n, ix, _ in
                    for i in 0..<n {
                        (dst + (oy + i) * size).copyMemory(from: src + (base + ox + i * ix) * size, byteCount: size)
                    }
                }
            }
        }
        return y
    }

    static func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        switch (x.dtype, dtype) {
        case (.float32, .float32), (.int64, .int64): return x
        case (.int64, .float32), (.int64, .float16), (.int64, .float64):
            return Tensor(floats: x.int64s.map { Float($0) }, shape: x.shape)
        case (.float32, .int64), (.float32, .int32):
            return Tensor(int64s: x.floats.map { $0.isFinite ? Int64(max(min($0, 9e18), -9e18)) : 0 }, shape: x.shape)
        case (.int64, .int32): return x
        case (.float32, .float16), (.float32, .float64): return x
        default: throw CNXError("Cast from \(x.dtype.name) to \(dtype.name) is not supported")
        }
    }
}
