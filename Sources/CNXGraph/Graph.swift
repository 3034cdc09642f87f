/// One dimension of a value's shape: a number, or a symbol (such as `batch` or `height`) times a
/// rational factor, which is how symbolic sizes shrink through strided convolutions (`height/4`).
public enum Dim: Hashable, CustomStringConvertible, Sendable {
    case fixed(Int)
    case symbolic(name: String, num: Int, den: Int)
    /// A size that depends on runtime values the shape inference cannot follow.
    case unknown

    public static func symbol(_ name: String) -> Dim { .symbolic(name: name, num: 1, den: 1) }

    public var value: Int? {
        if case .fixed(let v) = self { return v }
        return nil
    }

    /// This dimension multiplied by p/q, kept exact; nil-free: unknown stays unknown.
    public func scaled(_ p: Int, _ q: Int) -> Dim {
        switch self {
        case .fixed(let v):
            return (v * p) % q == 0 ? .fixed(v * p / q) : .unknown
        case .symbolic(let name, let num, let den):
            let n = num * p, d = den * q
            let g = gcd(n, d)
            return .symbolic(name: name, num: n / g, den: d / g)
        case .unknown:
            return .unknown
        }
    }

    public var description: String {
        switch self {
        case .fixed(let v): return String(v)
        case .symbolic(let name, let num, let den):
            var s = name
            if num != 1 { s = "\(num)*\(s)" }
            if den != 1 { s += "/\(den)" }
            return s
        case .unknown: return "?"
        }
    }
}

func gcd(_ a: Int, _ b: Int) -> Int {
    var (a, b) = (abs(a), abs(b))
    while b != 0 { (a, b) = (b, a % b) }
    return max(a, 1)
}

/// Formats a shape as `[batch, 3, 224, 224]`.
public func describe(_ shape: [Dim]) -> String { "[" + shape.map(\.description).joined(separator: ", ") + "]" }

/// A graph input, output or intermediate value: its name, type and (possibly symbolic) shape.
public struct ValueInfo: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Dim]?

    public init(name: String, dtype: DType, shape: [Dim]?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A node attribute.
public enum Attribute: @unchecked Sendable {
    case int(Int)
    case float(Float)
    case string(String)
    case ints([Int])
    case floats([Float])
    case tensor(Tensor)
}

/// The operations the graph may hold: ONNX operators by their ONNX names (default domain).
public enum OpType: String, CaseIterable, Sendable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div", pow = "Pow", sqrt = "Sqrt"
    case erf = "Erf", tanh = "Tanh", relu = "Relu", sigmoid = "Sigmoid", neg = "Neg", reciprocal = "Reciprocal"
    case gelu = "Gelu"
    /// x * sigmoid(alpha x) (ONNX opset 24; alpha 1 is SiLU).
    case swish = "Swish"
    case conv = "Conv", matMul = "MatMul", gemm = "Gemm"
    case reduceMean = "ReduceMean", reduceL2 = "ReduceL2", reduceSum = "ReduceSum", reduceProd = "ReduceProd"
    case layerNormalization = "LayerNormalization"
    /// x / sqrt(mean(x²) + epsilon) * scale over the axes from `axis` on (ONNX opset 23).
    case rmsNormalization = "RMSNormalization"
    case globalAveragePool = "GlobalAveragePool"
    case transpose = "Transpose", reshape = "Reshape", flatten = "Flatten"
    case squeeze = "Squeeze", unsqueeze = "Unsqueeze", concat = "Concat"
    case gather = "Gather", shape = "Shape", slice = "Slice", expand = "Expand"
    case cast = "Cast", constantOfShape = "ConstantOfShape", range = "Range"
    case identity = "Identity", dropout = "Dropout", constant = "Constant"

    // The project's own fused operations (domain "cnx"), produced by the passes. Each one's
    // inputs, attributes and layout are documented in Formats/CNX.md.
    /// x[..., K] · W[K, N] + b: a pointwise layer on the last axis.
    case linear = "cnx.Linear"
    /// Global response normalisation of ConvNeXt V2, channels-last.
    case grn = "cnx.GRN"
    /// timm's SimpleNorm over the last axis: x / sqrt(var(x) + epsilon) * scale with the unbiased
    /// variance (torch.var's default, sum of squares about the mean over C - 1); x not centred.
    case simpleNorm = "cnx.SimpleNorm"
    /// Stem: a convolution of an NCHW image (or of the NHWC map an earlier stem wrote), with an
    /// optional activation, then an optional norm over channels; NHWC out.
    case stem = "cnx.Stem"
    /// Downsample: a norm over channels, then a k x k stride-k convolution; NHWC in and out.
    case downsample = "cnx.Downsample"
    /// One ConvNeXt block, NHWC in and out: depthwise k x k, norm, pointwise, activation, (GRN),
    /// pointwise with layer scale folded in, residual add.
    case block = "cnx.Block"
    /// Head: global average pool of an NHWC map and a norm (in either order), then none, one or
    /// two Linear layers (an MLP head's hidden layer with its activation, the classifier).
    case head = "cnx.Head"
    /// A feature map leaving the network (a backbone's output): an optional norm over the
    /// channels of an NHWC map, written NCHW.
    case features = "cnx.Features"

    /// True for the project's own operations, which ONNX files never contain.
    public var isFused: Bool { rawValue.hasPrefix("cnx.") }
}

/// One operation: its type, named inputs and outputs (an empty input name is an omitted optional
/// input, as in ONNX), and attributes.
public struct Node: Sendable {
    public var name: String
    public var op: OpType
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

    public init(
        name: String, op: OpType, inputs: [String], outputs: [String],
        attributes: [String: Attribute] = [:]
    ) {
        self.name = name
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    public func int(_ key: String) -> Int? {
        if case .int(let v)? = attributes[key] { return v }
        return nil
    }

    public func float(_ key: String) -> Float? {
        if case .float(let v)? = attributes[key] { return v }
        return nil
    }

    public func ints(_ key: String) -> [Int]? {
        if case .ints(let v)? = attributes[key] { return v }
        return nil
    }

    public func string(_ key: String) -> String? {
        if case .string(let v)? = attributes[key] { return v }
        return nil
    }

    /// "Conv 'name'", for messages.
    public var label: String { "\(op.rawValue) node '\(name)'" }
}

/// The one intermediate representation every reader produces and every later stage consumes:
/// nodes in topological order, constant tensors by name, the graph's inputs and outputs.
public struct Graph: @unchecked Sendable {
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var nodes: [Node]
    public var initializers: [String: Tensor]
    /// Where the graph came from: producer, opset and similar facts, for `inspect`.
    public var metadata: [String: String]

    public init(
        inputs: [ValueInfo], outputs: [ValueInfo], nodes: [Node],
        initializers: [String: Tensor], metadata: [String: String] = [:]
    ) {
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.initializers = initializers
        self.metadata = metadata
    }

    /// Op type counts, most frequent first.
    public var opHistogram: [(OpType, Int)] {
        var counts: [OpType: Int] = [:]
        for n in nodes { counts[n.op, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.rawValue < $1.key.rawValue }
    }

    /// Parameters: the elements and bytes of the floating-point initializers, without the
    /// one-element ones (an epsilon, GELU's 0.5 and sqrt 2, a Pow's exponent: constants of the
    /// arithmetic a reader or exporter spelled out, not weights), so a checkpoint's count is
    /// PyTorch's `sum(p.numel() for p in model.parameters())`.
    public var parameterCount: (elements: Int, bytes: Int) {
        var e = 0, b = 0
        for t in initializers.values where (t.dtype == .float32 || t.dtype == .float16 || t.dtype == .bfloat16) && t.count > 1 {
            e += t.count
            b += t.byteCount
        }
        return (e, b)
    }

    /// For each value name, the nodes that read it.
    public func consumers() -> [String: [Int]] {
        var map: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() {
            for input in n.inputs where !input.isEmpty { map[input, default: []].append(i) }
        }
        return map
    }

    /// For each value name, the index of the node that writes it.
    public func producers() -> [String: Int] {
        var map: [String: Int] = [:]
        for (i, n) in nodes.enumerated() {
            for o in n.outputs where !o.isEmpty { map[o] = i }
        }
        return map
    }
}
