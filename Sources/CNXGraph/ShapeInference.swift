/// What is known about one value before running the graph: its element type, its shape with
/// symbolic dimensions, and for small int64 tensors that hold shapes (Shape -> Gather -> Concat ->
/// Reshape chains) the dimensions they hold.
public struct ValueFacts: Sendable {
    public var dtype: DType
    public var shape: [Dim]?
    /// The elements of a 1-D or scalar int64 tensor, as dimensions (fixed or symbolic).
    public var elements: [Dim]?

    public init(dtype: DType, shape: [Dim]?, elements: [Dim]? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.elements = elements
    }
}

/// A product of dimensions: a rational coefficient times at most one symbol.
private struct Product {
    var num: Int
    var den: Int
    var symbol: String?

    init?(_ dims: some Sequence<Dim>) {
        num = 1; den = 1; symbol = nil
        for d in dims {
            switch d {
            case .fixed(let v): num *= v
            case .symbolic(let name, let n, let q):
                guard symbol == nil else { return nil }
                symbol = name; num *= n; den *= q
            case .unknown: return nil
            }
        }
        reduce()
    }

    mutating func reduce() {
        let g = gcd(num, den)
        num /= g; den /= g
    }

    func divided(by other: Product) -> Dim {
        guard other.num != 0 else { return .unknown }
        var r = self
        r.num *= other.den
        r.den *= other.num
        if let s = other.symbol {
            guard s == symbol else { return .unknown }
            r.symbol = nil
        }
        r.reduce()
        return r.dim
    }

    var dim: Dim {
        if let symbol { return .symbolic(name: symbol, num: num, den: den) }
        return den == 1 ? .fixed(num) : .unknown
    }
}

/// Infers every value's type and shape through the graph, with symbolic batch, height and width.
/// Throws when a shape is certainly inconsistent (the error names the node); dimensions it cannot
/// follow become `.unknown` rather than guesses.
public enum ShapeInference {
    public static func infer(_ graph: Graph) throws -> [String: ValueFacts] {
        var facts: [String: ValueFacts] = [:]
        for (name, t) in graph.initializers {
            var f = ValueFacts(dtype: t.dtype, shape: t.shape.map { .fixed($0) })
            if t.dtype == .int64, t.shape.count <= 1, t.count <= 64 { f.elements = t.int64s.map { .fixed(Int($0)) } }
            facts[name] = f
        }
        for v in graph.inputs { facts[v.name] = ValueFacts(dtype: v.dtype, shape: v.shape) }
        for node in graph.nodes {
            let ins = node.inputs.map { $0.isEmpty ? nil : facts[$0] }
            do {
                let outs = try node.schema.shape(Context(node: node, values: ins))
                for (name, f) in zip(node.outputs, outs) where !name.isEmpty { facts[name] = f }
            } catch let e as CNXError {
                throw CNXError("\(node.label): \(e.message)")
            }
        }
        return facts
    }

    static func broadcast(_ a: [Dim], _ b: [Dim]) throws -> [Dim] {
        let rank = max(a.count, b.count)
        var out: [Dim] = []
        for i in 0..<rank {
            let da = i < rank - a.count ? Dim.fixed(1) : a[i - (rank - a.count)]
            let db = i < rank - b.count ? Dim.fixed(1) : b[i - (rank - b.count)]
            if da == db || db == .fixed(1) {
                out.append(da)
            } else if da == .fixed(1) {
                out.append(db)
            } else if let x = da.value, let y = db.value, x != y {
                throw CNXError("shapes \(describe(a)) and \(describe(b)) do not broadcast")
            } else if da.value != nil {
                out.append(da)
            } else if db.value != nil {
                out.append(db)
            } else {
                out.append(.unknown)
            }
        }
        return out
    }

    static func axis(_ a: Int, rank: Int) throws -> Int {
        let v = a < 0 ? a + rank : a
        guard v >= 0 && v < rank else { throw CNXError("axis \(a) out of range for rank \(rank)") }
        return v
    }

    /// The constant integers an input holds, when they are known.
    static func constants(_ f: ValueFacts?) -> [Int]? {
        guard let e = f?.elements else { return nil }
        let v = e.compactMap(\.value)
        return v.count == e.count ? v : nil
    }

    /// What a shape function sees of one node: the node and the facts of its inputs (nil for an
    /// omitted or unknown input).
    public typealias Context = NodeInputs<ValueFacts>

    /// One output of input 0's type with shape `s` (or `dtype`).
    static func shaped(_ x: ValueFacts, _ s: [Dim]?, _ dtype: DType? = nil) -> [ValueFacts] {
        [ValueFacts(dtype: dtype ?? x.dtype, shape: s)]
    }

    /// One output of input 0's type and shape: elementwise operations and norms.
    static func same(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        return [ValueFacts(dtype: x.dtype, shape: x.shape)]
    }

    /// Input 0 itself, its known elements included (Identity, Dropout).
    static func passThrough(_ c: Context) throws -> [ValueFacts] {
        [try c.input(0)]
    }

    static func constant(_ c: Context) throws -> [ValueFacts] {
        throw CNXError("Constant nodes are folded by the reader")
    }

    /// Elementwise arithmetic with numpy broadcasting; small int64 shape vectors are computed.
    static func binary(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        let y = try c.input(1)
        guard let a = x.shape, let b = y.shape else { return shaped(x, nil) }
        var out = ValueFacts(dtype: x.dtype, shape: try broadcast(a, b))
        if let u = constants(x), let v = constants(y), u.count == v.count || v.count == 1 {
            out.elements = zip(u, v.count == 1 ? Array(repeating: v[0], count: u.count) : v).map { p, q -> Dim in
                switch node.op {
                case .add: return .fixed(p + q)
                case .sub: return .fixed(p - q)
                case .mul: return .fixed(p * q)
                case .div: return q != 0 ? .fixed(p / q) : .unknown
                default: return .unknown
                }
            }
        }
        return [out]
    }

    static func cast(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        guard let to = node.int("to"), let dtype = DType(rawValue: Int32(to)) else { throw CNXError("Cast without a known 'to'") }
        var out = x
        out.dtype = dtype == .int32 ? .int64 : dtype == .float16 || dtype == .float64 ? .float32 : dtype
        return [out]
    }

    /// A 2-D convolution, NCHW.
    static func conv(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        let w = try c.input(1)
        guard let s = x.shape else { return shaped(x, nil) }
        guard let ws = w.shape, ws.count == 4, s.count == 4 else { throw CNXError("only 2-D convolution is supported") }
        let strides = node.ints("strides") ?? [1, 1], dil = node.ints("dilations") ?? [1, 1]
        let pads = node.ints("pads") ?? [0, 0, 0, 0]
        let autoPad = node.string("auto_pad") ?? "NOTSET"
        guard strides.count == 2, dil.count == 2, pads.count == 4, let kh = ws[2].value, let kw = ws[3].value else {
            throw CNXError("invalid convolution attributes")
        }
        if let channels = s[1].value, let wc = ws[1].value, let group = Optional(node.int("group") ?? 1), channels != wc * group {
            throw CNXError("input has \(channels) channels, weight \(describe(ws)) with group \(group) expects \(wc * group)")
        }
        func out(_ d: Dim, _ k: Int, _ i: Int) -> Dim {
            if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                if let v = d.value { return .fixed((v + strides[i] - 1) / strides[i]) }
                return d.scaled(1, strides[i])
            }
            let total = autoPad == "VALID" ? 0 : pads[i] + pads[i + 2]
            let shrink = total - dil[i] * (k - 1) - 1
            if let v = d.value { return .fixed((v + shrink) / strides[i] + 1) }
            if shrink + strides[i] == 0 { return d.scaled(1, strides[i]) }
            return .unknown
        }
        return shaped(x, [s[0], ws[0], out(s[2], kh, 0), out(s[3], kw, 1)])
    }

    static func matMul(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        let y = try c.input(1)
        guard var a = x.shape, var b = y.shape, !a.isEmpty, !b.isEmpty else { return shaped(x, nil) }
        let av = a.count == 1, bv = b.count == 1
        if av { a = [.fixed(1)] + a }
        if bv { b = b + [.fixed(1)] }
        if let k1 = a.last?.value, let k2 = b[b.count - 2].value, k1 != k2 {
            throw CNXError("inner dimensions differ: \(describe(a)) x \(describe(b))")
        }
        var out = try broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) + [a[a.count - 2], b[b.count - 1]]
        if av { out.remove(at: out.count - 2) }
        if bv { out.removeLast() }
        return shaped(x, out)
    }

    static func gemm(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        let y = try c.input(1)
        guard let a = x.shape, let b = y.shape, a.count == 2, b.count == 2 else { throw CNXError("Gemm needs 2-D inputs") }
        let ta = node.int("transA") ?? 0, tb = node.int("transB") ?? 0
        return shaped(x, [ta != 0 ? a[1] : a[0], tb != 0 ? b[0] : b[1]])
    }

    /// A reduction over constant axes (an input or the attribute).
    static func reduce(_ c: Context) throws -> [ValueFacts] {
        let ins = c.values
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        var axes: [Int]
        if ins.count > 1, ins[1] != nil {
            guard let c = constants(ins[1]) else { return shaped(x, nil) }
            axes = c
        } else {
            axes = node.ints("axes") ?? []
        }
        if axes.isEmpty {
            if node.int("noop_with_empty_axes") == 1 { return [ValueFacts(dtype: x.dtype, shape: x.shape)] }
            axes = Array(0..<s.count)
        }
        let set = Set(try axes.map { try axis($0, rank: s.count) })
        let keep = (node.int("keepdims") ?? 1) != 0
        var out: [Dim] = []
        for (i, d) in s.enumerated() {
            if set.contains(i) { if keep { out.append(.fixed(1)) } } else { out.append(d) }
        }
        return shaped(x, out)
    }

    static func globalAveragePool(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        guard s.count >= 3 else { throw CNXError("needs rank 3 or more") }
        return shaped(x, Array(s[0..<2]) + Array(repeating: .fixed(1), count: s.count - 2))
    }

    static func transpose(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        let perm = node.ints("perm") ?? Array((0..<s.count).reversed())
        guard perm.count == s.count, Set(perm) == Set(0..<s.count) else { throw CNXError("invalid perm \(perm) for rank \(s.count)") }
        return shaped(x, perm.map { s[$0] })
    }

    static func reshape(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        guard let spec = try c.input(1).elements else { return shaped(x, nil) }
        var out: [Dim] = []
        var inferred: Int?
        for (i, d) in spec.enumerated() {
            if d == .fixed(0) && node.int("allowzero") != 1 {
                guard let s = x.shape, i < s.count else { return shaped(x, nil) }
                out.append(s[i])
            } else if d == .fixed(-1) {
                inferred = i
                out.append(.unknown)
            } else {
                out.append(d)
            }
        }
        if let i = inferred {
            var rest = out
            rest.remove(at: i)
            if let s = x.shape, let total = Product(s), let known = Product(rest) {
                out[i] = total.divided(by: known)
            }
        }
        return shaped(x, out)
    }

    static func flatten(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        let a = (node.int("axis") ?? 1) < 0 ? (node.int("axis") ?? 1) + s.count : (node.int("axis") ?? 1)
        guard a >= 0 && a <= s.count else { throw CNXError("axis out of range") }
        return shaped(x, [Product(s[..<a])?.dim ?? .unknown, Product(s[a...])?.dim ?? .unknown])
    }

    /// Squeeze and Unsqueeze.
    static func squeeze(_ c: Context) throws -> [ValueFacts] {
        let ins = c.values
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        let axes: [Int]?
        if ins.count > 1, ins[1] != nil { axes = constants(ins[1]) } else { axes = node.ints("axes") }
        var result: ValueFacts
        if node.op == .squeeze {
            if let axes {
                let set = Set(try axes.map { try axis($0, rank: s.count) })
                result = shaped(x, s.enumerated().filter { !set.contains($0.offset) }.map(\.element))[0]
            } else {
                result = shaped(x, s.filter { $0 != .fixed(1) })[0]
            }
        } else {
            guard let axes else { return shaped(x, nil) }
            let rank = s.count + axes.count
            let set = Set(try axes.map { try axis($0, rank: rank) })
            var it = s.makeIterator()
            result = shaped(x, (0..<rank).map { set.contains($0) ? .fixed(1) : it.next() ?? .unknown })[0]
        }
        result.elements = x.elements
        return [result]
    }

    static func concat(_ c: Context) throws -> [ValueFacts] {
        let ins = c.values
        let node = c.node
        let x = try c.input(0)
        let parts = ins.compactMap { $0 }
        guard parts.count == ins.count, let s0 = parts[0].shape else { return shaped(x, nil) }
        let a = try axis(node.int("axis") ?? 0, rank: s0.count)
        var out = s0
        var total: Int? = 0
        for p in parts {
            guard let ps = p.shape, ps.count == s0.count else { return shaped(x, nil) }
            if let t = total, let v = ps[a].value { total = t + v } else { total = nil }
        }
        out[a] = total.map { .fixed($0) } ?? (parts.count == 1 ? s0[a] : .unknown)
        var result = ValueFacts(dtype: x.dtype, shape: out)
        if parts.allSatisfy({ $0.elements != nil }) { result.elements = parts.flatMap { $0.elements! } }
        return [result]
    }

    static func gather(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        let idx = try c.input(1)
        guard let s = x.shape, let ish = idx.shape else { return shaped(x, nil) }
        let a = try axis(node.int("axis") ?? 0, rank: s.count)
        var result = ValueFacts(dtype: x.dtype, shape: Array(s[..<a]) + ish + Array(s[(a + 1)...]))
        if let e = x.elements, let picks = constants(idx) {
            result.elements = picks.map { i in
                let j = i < 0 ? i + e.count : i
                return j >= 0 && j < e.count ? e[j] : .unknown
            }
        }
        return [result]
    }

    /// The Shape operator: the dimensions themselves become the elements.
    static func shapeOf(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return [ValueFacts(dtype: .int64, shape: [.unknown])] }
        var start = node.int("start") ?? 0, end = node.int("end") ?? s.count
        if start < 0 { start += s.count }
        if end < 0 { end += s.count }
        start = min(max(start, 0), s.count)
        end = min(max(end, start), s.count)
        return [ValueFacts(dtype: .int64, shape: [.fixed(end - start)], elements: Array(s[start..<end]))]
    }

    static func slice(_ c: Context) throws -> [ValueFacts] {
        let ins = c.values
        let node = c.node
        let x = try c.input(0)
        guard let s = x.shape else { return shaped(x, nil) }
        let starts: [Int]?, ends: [Int]?, axes: [Int]?, steps: [Int]?
        if ins.count >= 3 {
            starts = constants(ins[1]); ends = constants(ins[2])
            axes = ins.count > 3 ? constants(ins[3]) : nil
            steps = ins.count > 4 ? constants(ins[4]) : nil
            if (ins.count > 3 && ins[3] != nil && axes == nil) || (ins.count > 4 && ins[4] != nil && steps == nil) { return shaped(x, nil) }
        } else {
            starts = node.ints("starts"); ends = node.ints("ends"); axes = node.ints("axes"); steps = nil
        }
        guard let starts, let ends, starts.count == ends.count else { return shaped(x, nil) }
        var out = s
        var elements = x.elements
        for (k, rawAxis) in (axes ?? Array(0..<starts.count)).enumerated() {
            let a = try axis(rawAxis, rank: s.count)
            let step = steps?[k] ?? 1
            guard let dim = s[a].value, step != 0 else { out[a] = .unknown; elements = nil; continue }
            var b = starts[k] < 0 ? starts[k] &+ dim : starts[k], e = ends[k] < 0 ? ends[k] &+ dim : ends[k]
            if step > 0 {
                b = min(max(b, 0), dim); e = min(max(e, 0), dim)
            } else {
                b = min(max(b, 0), dim - 1); e = min(max(e, -1), dim - 1)
            }
            let n = step > 0 ? max(0, (e - b + step - 1) / step) : max(0, (b - e - step - 1) / -step)
            out[a] = .fixed(n)
            if let el = elements, s.count == 1 { elements = stride(from: b, to: e, by: step).map { el[$0] } }
        }
        var result = ValueFacts(dtype: x.dtype, shape: out)
        result.elements = elements
        return [result]
    }

    static func expand(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        guard let s = x.shape, let target = try c.input(1).elements else { return shaped(x, nil) }
        return shaped(x, try broadcast(s, target))
    }

    static func constantOfShape(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        var dtype = DType.float32
        if case .tensor(let t)? = node.attributes["value"] { dtype = t.dtype }
        return [ValueFacts(dtype: dtype, shape: x.elements)]
    }

    static func range(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        // Range(0, n, 1) over a symbolic n (the batch, in dynamo's lowering of a pooled
        // reshape) has n elements, whatever n is.
        if constants(x) == [0], constants(try c.input(2)) == [1], let limit = try c.input(1).elements, limit.count == 1 {
            return [ValueFacts(dtype: x.dtype, shape: limit)]
        }
        guard let start = constants(x), let limit = constants(try c.input(1)), let delta = constants(try c.input(2)),
            start.count == 1, limit.count == 1, delta.count == 1, delta[0] != 0
        else {
            return [ValueFacts(dtype: x.dtype, shape: [.unknown])]
        }
        let values = Array(stride(from: start[0], to: limit[0], by: delta[0]))
        return [ValueFacts(dtype: x.dtype, shape: [.fixed(values.count)], elements: values.map { .fixed($0) })]
    }

    static func linear(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        guard let s = x.shape, let w = try c.input(1).shape, w.count == 2 else { return shaped(x, nil) }
        if let k = s.last?.value, let wk = w[0].value, k != wk { throw CNXError("input \(describe(s)) does not fit weight \(describe(w))") }
        return shaped(x, Array(s.dropLast()) + [w[1]])
    }

    static func stem(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        // NCHW image (or NHWC map, input_layout "nhwc") in, NHWC map out; weight [Cin*k*k, Cout].
        guard let s = x.shape, s.count == 4, let w = try c.input("W").shape, w.count == 2, let k = node.int("kernel"), k > 0 else {
            return shaped(x, nil)
        }
        let stride = node.int("stride") ?? k, pad = node.int("pad") ?? 0
        let nhwc = node.string("input_layout") == "nhwc"
        let (h, wd) = nhwc ? (s[1], s[2]) : (s[2], s[3])
        return shaped(x, [s[0], convolved(h, k, stride, pad), convolved(wd, k, stride, pad), w[1]])
    }

    static func downsample(_ c: Context) throws -> [ValueFacts] {
        let node = c.node
        let x = try c.input(0)
        // NHWC in and out; the weight is [k*k*Cin, Cout].
        guard let s = x.shape, s.count == 4, let w = try c.input("W").shape, w.count == 2, let k = node.int("kernel"), k > 0 else {
            return shaped(x, nil)
        }
        return shaped(
            x, [s[0], s[1].value.map { .fixed($0 / k) } ?? s[1].scaled(1, k), s[2].value.map { .fixed($0 / k) } ?? s[2].scaled(1, k), w[1]])
    }

    /// NHWC in, NCHW out.
    static func features(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        guard let s = x.shape, s.count == 4 else { return shaped(x, nil) }
        return shaped(x, [s[0], s[3], s[1], s[2]])
    }

    static func head(_ c: Context) throws -> [ValueFacts] {
        let x = try c.input(0)
        // [N, C] features, then the optional layers W [C, E] and W2 [E, M].
        guard let s = x.shape, s.count == 4 else { return shaped(x, nil) }
        var width = s[3]
        for slot in ["W", "W2"] {
            guard let f = c.optional(slot) else { continue }
            guard let w = f.shape, w.count == 2 else { return shaped(x, nil) }
            width = w[1]
        }
        return shaped(x, [s[0], width])
    }

    /// The output size of a convolution over `d` (kernel k, stride, symmetric padding pad). A
    /// symbolic size is taken to be divisible by the stride (as the network's input must be).
    static func convolved(_ d: Dim, _ k: Int, _ stride: Int, _ pad: Int) -> Dim {
        let extra = 2 * pad - k
        if let v = d.value { return .fixed((v + extra) / stride + 1) }
        return extra + stride >= 0 && extra + stride < stride ? d.scaled(1, stride) : .unknown
    }
}
