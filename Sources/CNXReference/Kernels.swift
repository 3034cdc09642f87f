import CKernels
import CReferenceKernels
import CNXGraph
import Foundation

/// The reference implementation of every operator, following the ONNX operator specification.
package enum Kernels {
    package static func evaluate(_ node: Node, _ args: [Tensor?]) throws -> [Tensor] {
        func arg(_ i: Int) throws -> Tensor {
            guard i < args.count, let t = args[i] else { throw CNXError("input \(i) is missing") }
            return t
        }
        func optionalArg(_ i: Int) -> Tensor? { i < args.count ? args[i] : nil }
        switch node.op {
        case .add, .sub, .mul, .div, .pow:
            return [try binary(node.op, arg(0), arg(1))]
        case .sqrt: return [try unary(arg(0)) { sqrtf($0) }]
        case .tanh: return [try unary(arg(0)) { tanhf($0) }]
        case .relu: return [try unary(arg(0)) { max($0, 0) }]
        case .sigmoid: return [try unary(arg(0)) { 1 / (1 + expf(-$0)) }]
        case .neg: return [try unary(arg(0)) { -$0 }]
        case .reciprocal: return [try unary(arg(0)) { 1 / $0 }]
        case .erf:
            let x = try float(arg(0))
            let y = Tensor(zeros: .float32, shape: x.shape)
            cnx_erf_f32(x.floatPointer, y.floatPointer, Int64(x.count))
            return [y]
        case .swish:
            let alpha = node.float("alpha") ?? 1
            return [try unary(arg(0)) { $0 / (1 + expf(-alpha * $0)) }]
        case .gelu:
            let x = try float(arg(0))
            let approximate = node.string("approximate") ?? "none"
            guard approximate == "none" || approximate == "tanh" else {
                throw CNXError("unknown approximate '\(approximate)'")
            }
            let y = Tensor(zeros: .float32, shape: x.shape)
            cnx_gelu_f32(x.floatPointer, y.floatPointer, Int64(x.count), approximate == "tanh" ? 1 : 0)
            return [y]
        case .conv:
            return [try conv(node, try float(arg(0)), try float(arg(1)), try optionalArg(2).map(float))]
        case .matMul:
            return [try matMul(try float(arg(0)), try float(arg(1)))]
        case .gemm:
            return [try gemm(node, try float(arg(0)), try float(arg(1)), try optionalArg(2).map(float))]
        case .reduceMean, .reduceL2, .reduceSum:
            return [try reduce(node, try float(arg(0)), axesInput: optionalArg(1))]
        case .reduceProd:
            return [try reduceProduct(node, arg(0), axesInput: optionalArg(1))]
        case .rmsNormalization:
            let x = try float(arg(0))
            let axis = try normalizeAxis(node.int("axis") ?? -1, rank: x.shape.count)
            return [try rowNorm(x, scale: try float(arg(1)), from: axis, eps: node.float("epsilon") ?? 1e-5, kind: .rms)]
        case .simpleNorm:
            let x = try float(arg(0))
            return [try rowNorm(x, scale: try float(arg(1)), from: max(0, x.shape.count - 1), eps: node.float("epsilon") ?? 1e-5, kind: .simple)]
        case .layerNormalization:
            if node.outputs.count > 1 && node.outputs[1...].contains(where: { !$0.isEmpty }) {
                throw CNXError("the optional Mean and InvStdDev outputs are not supported")
            }
            return [try layerNorm(node, try float(arg(0)), try optionalArg(1).map(float), try optionalArg(2).map(float))]
        case .globalAveragePool:
            let x = try float(arg(0))
            guard x.shape.count >= 3 else { throw CNXError("needs rank 3 or more, got \(x.shape)") }
            let outer = x.shape[0] * x.shape[1], inner = x.shape[2...].reduce(1, *)
            let y = Tensor(zeros: .float32, shape: Array(x.shape[0..<2]) + Array(repeating: 1, count: x.shape.count - 2))
            cnx_reduce_middle_f32(x.floatPointer, Int64(outer), Int64(inner), 1, 0, y.floatPointer)
            return [y]
        case .transpose:
            let x = try arg(0)
            let perm = node.ints("perm") ?? Array((0..<x.shape.count).reversed())
            return [try transpose(x, perm)]
        case .reshape:
            let x = try arg(0)
            let shape = try ints(arg(1), "shape")
            return [try reshape(x, shape, allowZero: node.int("allowzero") == 1)]
        case .flatten:
            let x = try arg(0)
            var axis = node.int("axis") ?? 1
            if axis < 0 { axis += x.shape.count }
            guard axis >= 0 && axis <= x.shape.count else { throw CNXError("axis out of range for \(x.shape)") }
            return [x.reshaped([x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])]
        case .squeeze:
            let x = try arg(0)
            let axes = try optionalArg(1).map { try ints($0, "axes") } ?? node.ints("axes")
            var shape: [Int] = []
            let rank = x.shape.count
            let normalized = try Set((axes ?? []).map { try normalizeAxis($0, rank: rank) })
            for (i, d) in x.shape.enumerated() {
                if let _ = axes {
                    if normalized.contains(i) {
                        guard d == 1 else { throw CNXError("cannot squeeze axis \(i) of size \(d)") }
                        continue
                    }
                } else if d == 1 { continue }
                shape.append(d)
            }
            return [x.reshaped(shape)]
        case .unsqueeze:
            let x = try arg(0)
            guard let axes = try optionalArg(1).map({ try ints($0, "axes") }) ?? node.ints("axes") else {
                throw CNXError("no axes")
            }
            let rank = x.shape.count + axes.count
            let normalized = try Set(axes.map { try normalizeAxis($0, rank: rank) })
            guard normalized.count == axes.count else { throw CNXError("repeated axes \(axes)") }
            var shape: [Int] = []
            var source = x.shape.makeIterator()
            for i in 0..<rank { shape.append(normalized.contains(i) ? 1 : source.next() ?? 1) }
            return [x.reshaped(shape)]
        case .concat:
            let parts = try (0..<args.count).map { try arg($0) }
            return [try concat(parts, axis: node.int("axis") ?? 0)]
        case .gather:
            return [try gather(arg(0), arg(1), axis: node.int("axis") ?? 0)]
        case .shape:
            let x = try arg(0)
            let rank = x.shape.count
            var start = node.int("start") ?? 0, end = node.int("end") ?? rank
            if start < 0 { start += rank }
            if end < 0 { end += rank }
            start = min(max(start, 0), rank)
            end = min(max(end, start), rank)
            return [Tensor(int64s: x.shape[start..<end].map { Int64($0) }, shape: [end - start])]
        case .slice:
            let x = try arg(0)
            if args.count >= 3 {
                let starts = try ints(arg(1), "starts"), ends = try ints(arg(2), "ends")
                let axes = try optionalArg(3).map { try ints($0, "axes") }
                let steps = try optionalArg(4).map { try ints($0, "steps") }
                return [try slice(x, starts: starts, ends: ends, axes: axes, steps: steps)]
            }
            guard let starts = node.ints("starts"), let ends = node.ints("ends") else { throw CNXError("no starts/ends") }
            return [try slice(x, starts: starts, ends: ends, axes: node.ints("axes"), steps: nil)]
        case .expand:
            let x = try arg(0)
            let shape = try ints(arg(1), "shape")
            guard let out = broadcastShapes(x.shape, shape) else { throw CNXError("cannot expand \(x.shape) to \(shape)") }
            return [materialize(x, to: out)]
        case .cast:
            let x = try arg(0)
            guard let to = node.int("to"), let dtype = DType(rawValue: Int32(to)) else { throw CNXError("unsupported target type") }
            return [try cast(x, to: dtype)]
        case .constantOfShape:
            let shape = try ints(arg(0), "shape")
            guard shape.allSatisfy({ $0 >= 0 }), let n = checkedElementCount(shape), n <= 1 << 31 else {
                throw CNXError("invalid shape \(shape)")
            }
            if case .tensor(let v)? = node.attributes["value"], v.count == 1 {
                let out = Tensor(zeros: v.dtype, shape: shape)
                for i in 0..<n { (out.storage.bytes + i * v.dtype.size).copyMemory(from: v.storage.bytes, byteCount: v.dtype.size) }
                return [out]
            }
            return [Tensor(zeros: .float32, shape: shape)]
        case .range:
            let start = try arg(0), limit = try arg(1), delta = try arg(2)
            guard start.count == 1, limit.count == 1, delta.count == 1, start.dtype == limit.dtype, start.dtype == delta.dtype else {
                throw CNXError("start, limit and delta must be scalars of one type")
            }
            if start.dtype == .int64 {
                let s = start.int64Pointer[0], l = limit.int64Pointer[0], d = delta.int64Pointer[0]
                guard d != 0 else { throw CNXError("delta is 0") }
                let n = max(0, Int((Double(l) - Double(s)) / Double(d)).advanced(by: (l - s) % d == 0 ? 0 : 1))
                guard n <= 1 << 24 else { throw CNXError("range of \(n) elements refused") }
                return [Tensor(int64s: (0..<n).map { s + Int64($0) * d }, shape: [n])]
            }
            let s = try float(start).floatPointer[0], l = try float(limit).floatPointer[0], d = try float(delta).floatPointer[0]
            let count = ceil((l - s) / d)
            guard d != 0, count.isFinite, count <= Float(1 << 24) else { throw CNXError("invalid range") }
            let n = max(0, Int(count))
            return [Tensor(floats: (0..<n).map { s + Float($0) * d }, shape: [n])]
        case .identity, .dropout:
            if node.outputs.count > 1 && !node.outputs[1].isEmpty { throw CNXError("Dropout's mask output is not supported") }
            return [try arg(0)]
        case .constant:
            throw CNXError("Constant nodes are folded by the reader")
        case .linear, .grn, .stem, .downsample, .block, .head:
            return try evaluateFused(node, args)
        }
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

    static func normalizeAxis(_ axis: Int, rank: Int) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0 && a < rank else { throw CNXError("axis \(axis) out of range for rank \(rank)") }
        return a
    }

    static func unary(_ x: Tensor, _ f: (Float) -> Float) throws -> Tensor {
        let x = try float(x)
        let y = Tensor(zeros: .float32, shape: x.shape)
        let xp = x.floatPointer, yp = y.floatPointer
        for i in 0..<x.count { yp[i] = f(xp[i]) }
        return y
    }

    static func binary(_ op: OpType, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw CNXError("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        if a.dtype == .int64 && b.dtype == .int64 {
            let y = Tensor(zeros: .int64, shape: shape)
            let ap = a.int64Pointer, bp = b.int64Pointer, yp = y.int64Pointer
            var failure: CNXError?
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
            if let failure { throw failure }
            return y
        }
        let a = try float(a), b = try float(b)
        let y = Tensor(zeros: .float32, shape: shape)
        let ap = a.floatPointer, bp = b.floatPointer, yp = y.floatPointer
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
              pads.allSatisfy({ $0 >= 0 }), group > 0 else {
            throw CNXError("invalid attributes (kernel_shape \(kernel), strides \(strides), pads \(pads), dilations \(dilations), group \(group)) for weight \(w.shape)")
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
        cnx_conv2d_f32(&s, x.floatPointer, w.floatPointer, b?.floatPointer, y.floatPointer, scratch)
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
                cnx_sgemm(0, 0, Int64(rows), Int64(n), Int64(k), 1, a.floatPointer, Int64(k), b.floatPointer, Int64(n), 0, y.floatPointer, Int64(n))
                if aVector { outShape.remove(at: outShape.count - 2) }
                if bVector { outShape.removeLast() }
                return y.reshaped(outShape)
            }
        }
        let sa = broadcastStrides(aBatch, to: batch), sb = broadcastStrides(bBatch, to: batch)
        let count = batch.reduce(1, *)
        var index = [Int](repeating: 0, count: batch.count)
        for i in 0..<count {
            var oa = 0, ob = 0
            for d in 0..<batch.count { oa += index[d] * sa[d]; ob += index[d] * sb[d] }
            cnx_sgemm(0, 0, Int64(m), Int64(n), Int64(k), 1, a.floatPointer + oa * m * k, Int64(k),
                      b.floatPointer + ob * k * n, Int64(n), 0, y.floatPointer + i * m * n, Int64(n))
            var d = batch.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < batch[d] { break }
                index[d] = 0
                d -= 1
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
        cnx_sgemm(Int32(ta != 0 ? 1 : 0), Int32(tb != 0 ? 1 : 0), Int64(m), Int64(n), Int64(k), alpha,
                  a.floatPointer, Int64(a.shape[1]), b.floatPointer, Int64(b.shape[1]), betaUsed, y.floatPointer, Int64(n))
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
            cnx_reduce_middle_f32(current.floatPointer, Int64(outer), Int64(size), Int64(inner), code, y.floatPointer)
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
            for i in 0..<x.count { out[target(i)] = out[target(i)] &* x.int64Pointer[i] }
            return Tensor(int64s: out, shape: outShape)
        }
        var out = [Float](repeating: 1, count: count)
        for i in 0..<x.count { out[target(i)] *= x.floatPointer[i] }
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
        rowNormRows(x.floatPointer, rows: rows, cols: cols, eps: eps, kind: kind, scale: g?.floatPointer, into: y.floatPointer)
        return y
    }

    static func rowNormRows(_ x: UnsafePointer<Float>, rows: Int, cols: Int, eps: Float, kind: RowNorm,
                            scale: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
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
        cnx_layernorm_lastaxis_f32(x.floatPointer, Int64(rows), Int64(cols), g?.floatPointer, b?.floatPointer, eps, y.floatPointer)
        return y
    }

    /// A copy of `x` broadcast to `shape`.
    static func materialize(_ x: Tensor, to shape: [Int]) -> Tensor {
        if x.shape == shape { return x }
        let y = Tensor(zeros: x.dtype, shape: shape)
        let size = x.dtype.size
        let sx = broadcastStrides(x.shape, to: shape), zero = [Int](repeating: 0, count: shape.count)
        let src = x.storage.bytes, dst = y.storage.bytes
        forEachBroadcastRow(shape, sx, zero) { ox, _, oy, n, ix, _ in
            for i in 0..<n { (dst + (oy + i) * size).copyMemory(from: src + (ox + i * ix) * size, byteCount: size) }
        }
        return y
    }

    static func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor {
        let rank = x.shape.count
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw CNXError("invalid perm \(perm) for \(x.shape)") }
        let outShape = perm.map { x.shape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
        let strides = perm.map { inStrides[$0] }
        let y = Tensor(zeros: x.dtype, shape: outShape)
        let zero = [Int](repeating: 0, count: rank)
        if x.dtype == .float32 {
            let src = x.floatPointer, dst = y.floatPointer
            forEachBroadcastRow(outShape, strides, zero) { ox, _, oy, n, ix, _ in
                for i in 0..<n { dst[oy + i] = src[ox + i * ix] }
            }
        } else {
            let size = x.dtype.size, src = x.storage.bytes, dst = y.storage.bytes
            forEachBroadcastRow(outShape, strides, zero) { ox, _, oy, n, ix, _ in
                for i in 0..<n { (dst + (oy + i) * size).copyMemory(from: src + (ox + i * ix) * size, byteCount: size) }
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

    static func concat(_ parts: [Tensor], axis: Int) throws -> Tensor {
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
        for p in parts {
            let chunk = p.shape[a] * inner * size
            for o in 0..<outer {
                (y.storage.bytes + o * shape[a] * inner * size + offset).copyMemory(from: p.storage.bytes + o * chunk, byteCount: chunk)
            }
            offset += chunk
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
        for o in 0..<outer {
            for (j, raw) in idx.enumerated() {
                let i = raw < 0 ? raw + size : raw
                guard i >= 0 && i < size else { throw CNXError("index \(raw) out of range for axis of size \(size)") }
                (y.storage.bytes + (o * idx.count + j) * chunk).copyMemory(from: data.storage.bytes + (o * size + i) * chunk, byteCount: chunk)
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
        forEachBroadcastRow(shape, strides, [Int](repeating: 0, count: rank)) { ox, _, oy, n, ix, _ in
            for i in 0..<n {
                (y.storage.bytes + (oy + i) * size).copyMemory(from: x.storage.bytes + (base + ox + i * ix) * size, byteCount: size)
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
