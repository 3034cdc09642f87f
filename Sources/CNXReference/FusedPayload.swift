import CKernels
import CNXGraph

// The fused operations (Formats/CNX.md, "Fused operations") as typed values. `FusedPayload`
// is the one place that knows which input slot holds what and which attribute says what: it
// reads a node into a payload (with errors naming the node) and writes a payload into a node.
// The fast executor, the reference kernels, the int8 lowering and the reports use the payload
// only, so a new precision is a case of `Precision`, not a set of string keys and slot numbers.

/// A constant input of a fused operation: the initializer's name and its tensor.
public struct Constant: @unchecked Sendable {
    public var name: String
    public var tensor: Tensor

    public init(name: String, tensor: Tensor) {
        self.name = name
        self.tensor = tensor
    }
}

/// The activation a fused operation applies (its `activation` attribute).
public enum FusedActivation: String, Sendable, CaseIterable {
    case gelu
    case geluTanh = "gelu_tanh"
    case silu
    /// GELU by the quadratic table (Formats/CNX.md, "The quadratic GELU"): within 1.12e-5 of
    /// `gelu`. `quantize --int8` writes it for blocks whose hidden activation is rounded to u8 codes
    /// of a step at least 1000 times that.
    case geluQuadratic = "gelu_quadratic"

    /// The kernels' CNX_ACT_* code.
    public var code: Int32 {
        switch self {
        case .gelu: return CNX_ACT_GELU
        case .geluTanh: return CNX_ACT_GELU_TANH
        case .silu: return CNX_ACT_SILU
        case .geluQuadratic: return CNX_ACT_GELU_QUADRATIC
        }
    }
}

/// A norm over the channels: its kind, epsilon and optional scale and shift.
public struct Norm: @unchecked Sendable {
    public init(kind: FusedNormKind, epsilon: Float, weight: Constant? = nil, bias: Constant? = nil) {
        self.kind = kind
        self.epsilon = epsilon
        self.weight = weight
        self.bias = bias
    }

    public var kind: FusedNormKind
    public var epsilon: Float
    public var weight: Constant?
    public var bias: Constant?
}

/// The int8 arithmetic of a GEMM layer (Formats/CNX.md, "int8 layers"): the u8 quantization of
/// the activation that enters it, the int8 weight's per-output-channel scales (the weight
/// tensor's own quantization) and the optional per-input-channel equalization.
public struct Int8Parameters: Sendable, Equatable {
    public var activationScale: Float
    public var activationZero: Int32
    public var weightScales: [Float]
    /// The input is divided by these, per input channel, before it is quantized (the int8
    /// weight's rows were multiplied by them), or nil.
    public var channelScales: [Float]?

    public init(activationScale: Float, activationZero: Int32, weightScales: [Float], channelScales: [Float]?) {
        self.activationScale = activationScale
        self.activationZero = activationZero
        self.weightScales = weightScales
        self.channelScales = channelScales
    }
}

/// The precision of a GEMM layer's weight. A new precision (bfloat16, float16) is a new case here,
/// read and written by `FusedPayload` and run by `LayerWeights`.
public enum Precision: Sendable, Equatable {
    case float32
    /// bfloat16 / float16 weights: widened to float32 (or dotted in bfloat16) by the kernels;
    /// nothing but the weight's dtype says so.
    case bfloat16
    case float16
    case int8(Int8Parameters)

    public var name: String {
        switch self {
        case .float32: return "float32"
        case .bfloat16: return "bfloat16"
        case .float16: return "float16"
        case .int8: return "int8"
        }
    }
}

/// One GEMM layer of a fused operation: y = x · W + B, W [K, N].
public struct Linear: @unchecked Sendable {
    public var weight: Constant
    public var bias: Constant?
    public var precision: Precision

    public init(weight: Constant, bias: Constant?, precision: Precision) {
        self.weight = weight
        self.bias = bias
        self.precision = precision
    }

    public var inputs: Int { weight.tensor.shape[0] }
    public var outputs: Int { weight.tensor.shape[1] }
}

/// A block's depthwise convolution: weight [k, k, C], bias [C].
public struct Depthwise: @unchecked Sendable {
    public init(weight: Constant, bias: Constant) {
        self.weight = weight
        self.bias = bias
    }

    public var weight: Constant
    public var bias: Constant
    public var kernel: Int { weight.tensor.shape[0] }
    /// A bfloat16 weight: the convolution runs on bfloat16 (its input rounded to bfloat16 as the
    /// weight is, exact products, float32 sums; Formats/CNX.md, `cnx.Block`).
    public var onBFloat16: Bool { weight.tensor.dtype == .bfloat16 }
}

/// ConvNeXt V2's global response normalisation of a block's hidden activation.
public struct GRNParameters: @unchecked Sendable {
    public init(gamma: Constant, beta: Constant, epsilon: Float) {
        self.gamma = gamma
        self.beta = beta
        self.epsilon = epsilon
    }

    public var gamma: Constant
    public var beta: Constant
    public var epsilon: Float
}

/// `cnx.Stem`: a k×k convolution of the image (or of an earlier stem's NHWC map), activation, norm.
public struct StemPayload: @unchecked Sendable {
    public init(conv: Linear, kernel: Int, stride: Int, pad: Int, nhwcInput: Bool, activation: FusedActivation?, norm: Norm) {
        self.conv = conv
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.nhwcInput = nhwcInput
        self.activation = activation
        self.norm = norm
    }

    public var conv: Linear
    public var kernel: Int
    public var stride: Int
    public var pad: Int
    /// The input is an NHWC map (the second convolution of an overlapping stem), not the image.
    public var nhwcInput: Bool
    public var activation: FusedActivation?
    /// `kind` may be `.none`.
    public var norm: Norm
}

/// `cnx.Downsample`: norm, then a k×k stride-k convolution.
public struct DownsamplePayload: @unchecked Sendable {
    public init(norm: Norm, kernel: Int, conv: Linear) {
        self.norm = norm
        self.kernel = kernel
        self.conv = conv
    }

    public var norm: Norm
    public var kernel: Int
    public var conv: Linear
}

/// `cnx.Block`: depthwise, norm (its scale and bias are folded into `pw1`), pw1, activation,
/// optional GRN, pw2 (the layer scale is folded into it), residual.
public struct BlockPayload: @unchecked Sendable {
    public init(depthwise: Depthwise, norm: Norm, pw1: Linear, activation: FusedActivation, grn: GRNParameters?, pw2: Linear) {
        self.depthwise = depthwise
        self.norm = norm
        self.pw1 = pw1
        self.activation = activation
        self.grn = grn
        self.pw2 = pw2
    }

    public var depthwise: Depthwise
    public var norm: Norm
    public var pw1: Linear
    public var activation: FusedActivation
    public var grn: GRNParameters?
    public var pw2: Linear
}

/// `cnx.Head`: pool and norm (or norm and pool), then up to two layers.
public struct HeadPayload: @unchecked Sendable {
    public init(norm: Norm, normFirst: Bool, fc1: Linear?, activation: FusedActivation?, fc2: Linear?) {
        self.norm = norm
        self.normFirst = normFirst
        self.fc1 = fc1
        self.activation = activation
        self.fc2 = fc2
    }

    public var norm: Norm
    public var normFirst: Bool
    /// Layer 1: the hidden layer of an MLP head, or the classifier.
    public var fc1: Linear?
    /// After `fc1` (an MLP head's hidden layer).
    public var activation: FusedActivation?
    /// Layer 2: an MLP head's classifier.
    public var fc2: Linear?
}

/// A fused operation, typed.
public enum FusedPayload: @unchecked Sendable {
    case stem(StemPayload)
    case downsample(DownsamplePayload)
    case block(BlockPayload)
    case head(HeadPayload)

    /// True for the operations a payload describes.
    public static func describes(_ op: OpType) -> Bool { [.stem, .downsample, .block, .head].contains(op) }

    /// The GEMM layers by number: 1 and 2 for a block's pw1 and pw2 and a head's two layers; 1
    /// for the stem's and downsample's convolution.
    public var layers: [Int: Linear] {
        switch self {
        case .stem(let p): return [1: p.conv]
        case .downsample(let p): return [1: p.conv]
        case .block(let p): return [1: p.pw1, 2: p.pw2]
        case .head(let p):
            var r: [Int: Linear] = [:]
            if let l = p.fc1 { r[1] = l }
            if let l = p.fc2 { r[2] = l }
            return r
        }
    }

    /// Replaces GEMM layer `layer` (as numbered by `layers`).
    public mutating func setLayer(_ layer: Int, _ linear: Linear) throws {
        switch (self, layer) {
        case (.stem(var p), 1): p.conv = linear; self = .stem(p)
        case (.downsample(var p), 1): p.conv = linear; self = .downsample(p)
        case (.block(var p), 1): p.pw1 = linear; self = .block(p)
        case (.block(var p), 2): p.pw2 = linear; self = .block(p)
        case (.head(var p), 1) where p.fc1 != nil: p.fc1 = linear; self = .head(p)
        case (.head(var p), 2) where p.fc2 != nil: p.fc2 = linear; self = .head(p)
        default: throw CNXError("the operation has no pointwise layer \(layer)")
        }
    }

    // MARK: - Reading a node

    /// Reads `node`, its constant inputs found by `constant` (a graph's initializers, or a
    /// reference evaluation's arguments). Throws a `CNXError` naming the node.
    public init(_ node: Node, constant: (String) -> Tensor?) throws {
        do {
            self = try withoutActuallyEscaping(constant) { try NodeReader(node: node, constant: $0).read() }
        } catch let e as CNXError {
            throw CNXError("\(node.label): \(e.message)")
        }
    }

    /// Reads `node` with the constants of `graph`.
    public init(_ node: Node, in graph: Graph) throws {
        try self.init(node, constant: { graph.initializers[$0] })
    }

    // MARK: - Writing a node

    /// Writes the payload into `node` (of the same op type): the input slots and the attributes
    /// the payload holds. Defaulted attributes the node does not carry stay absent, so a node
    /// read and written back is unchanged. The tensors themselves are the caller's to put in
    /// the graph (`constants`).
    public func write(into node: inout Node) {
        var w = NodeWriter(node: node)
        switch self {
        case .stem(let p):
            w.linear(p.conv, layer: 1, weight: Slots.Stem.weight, bias: Slots.Stem.bias)
            w.int(Keys.kernel, p.kernel, default: nil)
            w.int(Keys.stride, p.stride, default: p.kernel)
            w.int(Keys.pad, p.pad, default: 0)
            w.string(Keys.inputLayout, p.nhwcInput ? "nhwc" : "nchw", default: "nchw")
            w.activation(p.activation, default: nil)
            w.norm(p.norm, weight: Slots.Stem.normWeight, bias: Slots.Stem.normBias)
        case .downsample(let p):
            w.linear(p.conv, layer: 1, weight: Slots.Downsample.weight, bias: Slots.Downsample.bias)
            w.int(Keys.kernel, p.kernel, default: nil)
            w.norm(p.norm, weight: Slots.Downsample.normWeight, bias: Slots.Downsample.normBias)
        case .block(let p):
            w.input(Slots.Block.dwWeight, p.depthwise.weight.name)
            w.input(Slots.Block.dwBias, p.depthwise.bias.name)
            w.linear(p.pw1, layer: 1, weight: Slots.Block.w1, bias: Slots.Block.b1)
            w.linear(p.pw2, layer: 2, weight: Slots.Block.w2, bias: Slots.Block.b2)
            w.activation(p.activation, default: .gelu)
            w.norm(p.norm, weight: nil, bias: nil)
            if let g = p.grn {
                w.input(Slots.Block.grnGamma, g.gamma.name)
                w.input(Slots.Block.grnBeta, g.beta.name)
                w.float(Keys.grnEpsilon, g.epsilon, default: 1e-6)
            }
        case .head(let p):
            if let l = p.fc1 { w.linear(l, layer: 1, weight: Slots.Head.w1, bias: Slots.Head.b1) }
            if let l = p.fc2 { w.linear(l, layer: 2, weight: Slots.Head.w2, bias: Slots.Head.b2) }
            w.activation(p.activation, default: nil)
            w.int(Keys.normFirst, p.normFirst ? 1 : 0, default: 0)
            w.norm(p.norm, weight: Slots.Head.normWeight, bias: Slots.Head.normBias)
        }
        node = w.node
    }

    /// Every tensor the payload refers to, by name (to put into a graph's initializers).
    public var constants: [String: Tensor] {
        var r: [String: Tensor] = [:]
        func add(_ c: Constant?) { if let c { r[c.name] = c.tensor } }
        func add(_ n: Norm) { add(n.weight); add(n.bias) }
        for l in layers.values { add(l.weight); add(l.bias) }
        switch self {
        case .stem(let p): add(p.norm)
        case .downsample(let p): add(p.norm)
        case .block(let p):
            add(p.depthwise.weight); add(p.depthwise.bias)
            add(p.grn?.gamma); add(p.grn?.beta)
        case .head(let p): add(p.norm)
        }
        return r
    }
}

/// Where each fused operation keeps what: the slot numbers of the schema's named slots
/// (`OpSchema`, Formats/CNX.md's slot tables). Nothing outside this file and the schema spells a
/// slot of a fused operation.
enum Slots {
    private static func slot(_ op: OpType, _ name: String) -> Int { OpSchema.of(op).slot(name) }
    enum Stem {
        static let weight = slot(.stem, "W"), bias = slot(.stem, "B")
        static let normWeight = slot(.stem, "ln_scale"), normBias = slot(.stem, "ln_bias")
    }
    enum Downsample {
        static let weight = slot(.downsample, "W"), bias = slot(.downsample, "B")
        static let normWeight = slot(.downsample, "ln_scale"), normBias = slot(.downsample, "ln_bias")
    }
    enum Block {
        static let dwWeight = slot(.block, "dw_weight"), dwBias = slot(.block, "dw_bias")
        static let w1 = slot(.block, "W1"), b1 = slot(.block, "B1"), w2 = slot(.block, "W2"), b2 = slot(.block, "B2")
        static let grnGamma = slot(.block, "grn_gamma"), grnBeta = slot(.block, "grn_beta")
    }
    enum Head {
        static let w1 = slot(.head, "W"), b1 = slot(.head, "B"), w2 = slot(.head, "W2"), b2 = slot(.head, "B2")
        static let normWeight = slot(.head, "ln_scale"), normBias = slot(.head, "ln_bias")
    }
}

/// The attribute names of the fused operations, as the schema lists them. Nothing outside this
/// file and the schema spells one.
enum Keys {
    static let epsilon = "epsilon", norm = "norm", activation = "activation", kernel = "kernel"
    static let stride = "stride", pad = "pad", inputLayout = "input_layout", grnEpsilon = "grn_epsilon"
    static let normFirst = "norm_first"
    /// The u8 quantization of layer L's input.
    static func activationScale(_ layer: Int) -> String { LayerQuantizationKeys(layer).activationScale }
    static func activationZero(_ layer: Int) -> String { LayerQuantizationKeys(layer).activationZero }
    /// Layer L's input-channel equalization.
    static func channelScales(_ layer: Int) -> String { LayerQuantizationKeys(layer).channelScales }
    /// Layer L's weight scales as a node attribute: how format 1.0 and 1.1 files carry them
    /// (since 1.2 they are the weight tensor's quantization). Read, never written.
    static func legacyWeightScales(_ layer: Int) -> String { LayerQuantizationKeys(layer).weightScales }
}

private struct NodeReader {
    let node: Node
    let constant: (String) -> Tensor?

    func read() throws -> FusedPayload {
        // An attribute this reader does not know may change what the operation computes (a
        // newer minor version's): refused rather than ignored (Formats/CNX.md, Compatibility).
        if let unknown = node.attributes.keys.sorted().first(where: { node.schema.attribute($0) == nil }) {
            throw CNXError("attribute '\(unknown)' is not one this reader knows (written by a newer convnext-convert?)")
        }
        switch node.op {
        case .stem:
            let k = try kernel()
            let conv = try linear(layer: 1, weight: Slots.Stem.weight, bias: Slots.Stem.bias, required: true)!
            return .stem(
                StemPayload(
                    conv: conv, kernel: k, stride: node.int(Keys.stride) ?? k, pad: node.int(Keys.pad) ?? 0,
                    nhwcInput: try layout(), activation: try activation(absent: nil),
                    norm: try norm(weight: Slots.Stem.normWeight, bias: Slots.Stem.normBias, allowNone: true)))
        case .downsample:
            let k = try kernel()
            return .downsample(
                DownsamplePayload(
                    norm: try norm(weight: Slots.Downsample.normWeight, bias: Slots.Downsample.normBias),
                    kernel: k,
                    conv: try linear(layer: 1, weight: Slots.Downsample.weight, bias: Slots.Downsample.bias, required: true)!))
        case .block:
            let dw = Depthwise(weight: try required(Slots.Block.dwWeight, "dw_weight"), bias: try required(Slots.Block.dwBias, "dw_bias"))
            var grn: GRNParameters?
            if let g = try optional(Slots.Block.grnGamma), let b = try optional(Slots.Block.grnBeta) {
                grn = GRNParameters(gamma: g, beta: b, epsilon: node.float(Keys.grnEpsilon) ?? 1e-6)
            }
            return .block(
                BlockPayload(
                    depthwise: dw, norm: try norm(weight: nil, bias: nil),
                    pw1: try linear(layer: 1, weight: Slots.Block.w1, bias: Slots.Block.b1, required: true)!,
                    activation: try activation(absent: .gelu) ?? .gelu, grn: grn,
                    pw2: try linear(layer: 2, weight: Slots.Block.w2, bias: Slots.Block.b2, required: true)!))
        case .head:
            return .head(
                HeadPayload(
                    norm: try norm(weight: Slots.Head.normWeight, bias: Slots.Head.normBias),
                    normFirst: node.int(Keys.normFirst) == 1,
                    fc1: try linear(layer: 1, weight: Slots.Head.w1, bias: Slots.Head.b1, required: false),
                    activation: try activation(absent: nil),
                    fc2: try linear(layer: 2, weight: Slots.Head.w2, bias: Slots.Head.b2, required: false)))
        default:
            throw CNXError("not a fused operation")
        }
    }

    func name(_ slot: Int) -> String? {
        slot < node.inputs.count && !node.inputs[slot].isEmpty ? node.inputs[slot] : nil
    }

    func optional(_ slot: Int) throws -> Constant? {
        guard let name = name(slot) else { return nil }
        guard let t = constant(name) else {
            throw CNXError("input \(slot) (\(node.schema.inputs[slot].name), '\(name)') must be a constant")
        }
        return Constant(name: name, tensor: t)
    }

    func required(_ slot: Int, _ what: String) throws -> Constant {
        guard let c = try optional(slot) else { throw CNXError("input \(slot) (\(what)) is missing") }
        return c
    }

    func kernel() throws -> Int {
        guard let k = node.int(Keys.kernel), k > 0 else { throw CNXError("missing or invalid 'kernel'") }
        return k
    }

    func layout() throws -> Bool {
        switch node.string(Keys.inputLayout) {
        case nil, "nchw": return false
        case "nhwc": return true
        case let other?: throw CNXError("unknown input_layout '\(other)' (nchw or nhwc)")
        }
    }

    func activation(absent: FusedActivation?) throws -> FusedActivation? {
        guard let name = node.string(Keys.activation) else { return absent }
        guard let a = FusedActivation(rawValue: name) else {
            throw CNXError("unknown activation '\(name)' (gelu, gelu_tanh, silu or gelu_quadratic)")
        }
        return a
    }

    func norm(weight: Int?, bias: Int?, allowNone: Bool = false) throws -> Norm {
        var kind = FusedNormKind.layer
        if let name = node.string(Keys.norm) {
            guard let k = FusedNormKind(rawValue: name), allowNone || k != .none else {
                throw CNXError("unknown norm '\(name)' (layer, rms, simple\(allowNone ? " or none" : ""))")
            }
            kind = k
        }
        return Norm(
            kind: kind, epsilon: node.float(Keys.epsilon) ?? 1e-6,
            weight: try weight.flatMap { try optional($0) }, bias: try bias.flatMap { try optional($0) })
    }

    /// GEMM layer `layer`: weight [K, N] at `weight`, bias [N] at `bias`; its precision from the
    /// weight's element type, and for int8 its parameters.
    func linear(layer: Int, weight: Int, bias: Int, required: Bool) throws -> Linear? {
        guard let w = try optional(weight) else {
            if required { throw CNXError("weight input \(weight) is missing") }
            return nil
        }
        guard w.tensor.shape.count == 2 else {
            throw CNXError("weight input \(weight) must be a constant 2-D tensor, got \(w.tensor.shape)")
        }
        let b = try optional(bias)
        let n = w.tensor.shape[1], k = w.tensor.shape[0]
        if let b, b.tensor.count != n { throw CNXError("pointwise layer \(layer): bias has \(b.tensor.count) values for \(n) outputs") }
        switch w.tensor.dtype {
        case .float32:
            return Linear(weight: w, bias: b, precision: .float32)
        case .bfloat16:
            return Linear(weight: w, bias: b, precision: .bfloat16)
        case .float16:
            return Linear(weight: w, bias: b, precision: .float16)
        case .int8:
            return Linear(weight: w, bias: b, precision: .int8(try int8(layer: layer, weight: w.tensor, outputs: n, inputs: k)))
        default:
            throw CNXError("weight input \(weight) must be float32, bfloat16, float16 or int8, got \(w.tensor.dtype.name)")
        }
    }

    func int8(layer: Int, weight: Tensor, outputs n: Int, inputs k: Int) throws -> Int8Parameters {
        guard let scale = node.float(Keys.activationScale(layer)), scale > 0, scale.isFinite,
            let zero = node.int(Keys.activationZero(layer)), (0...255).contains(zero)
        else {
            throw CNXError(
                "int8 pointwise layer \(layer) lacks a valid \(Keys.activationScale(layer)) (positive) or \(Keys.activationZero(layer)) (0...255)"
            )
        }
        // The weight scales: the tensor's own quantization (1.2), or a 1.0/1.1 file's attribute.
        let weightScales: [Float]
        if let q = weight.quantization {
            guard q.axis == 1, q.scales.count == n else {
                throw CNXError(
                    "int8 pointwise layer \(layer): the weight's quantization must be per output channel (axis 1, \(n) scales), got axis \(q.axis) with \(q.scales.count)"
                )
            }
            guard q.zeroPoints?.allSatisfy({ $0 == 0 }) ?? true else {
                throw CNXError("int8 pointwise layer \(layer): the weight's zero points must be 0 (symmetric)")
            }
            weightScales = q.scales
        } else if case .tensor(let w)? = node.attributes[Keys.legacyWeightScales(layer)], w.dtype == .float32, w.count == n {
            weightScales = w.floats
        } else {
            throw CNXError("int8 pointwise layer \(layer): the weight has no per-channel scales (\(n) values)")
        }
        guard weightScales.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw CNXError("int8 pointwise layer \(layer): weight scales must be positive and finite")
        }
        var channelScales: [Float]?
        if let attribute = node.attributes[Keys.channelScales(layer)] {
            guard case .tensor(let c) = attribute, c.dtype == .float32, c.count == k,
                c.floats.allSatisfy({ $0 > 0 && $0.isFinite })
            else {
                throw CNXError("\(Keys.channelScales(layer)) must hold \(k) positive float32 values")
            }
            channelScales = c.floats
        }
        return Int8Parameters(activationScale: scale, activationZero: Int32(zero), weightScales: weightScales, channelScales: channelScales)
    }
}

private struct NodeWriter {
    var node: Node

    mutating func input(_ slot: Int, _ name: String) {
        while node.inputs.count <= slot { node.inputs.append("") }
        node.inputs[slot] = name
    }

    /// Sets `key` to `value`, or leaves it absent when it is the default and absent already.
    mutating func set(_ key: String, _ value: Attribute, isDefault: Bool) {
        if isDefault && node.attributes[key] == nil { return }
        node.attributes[key] = value
    }

    mutating func int(_ key: String, _ v: Int, default d: Int?) { set(key, .int(v), isDefault: v == d) }
    mutating func float(_ key: String, _ v: Float, default d: Float) { set(key, .float(v), isDefault: v == d) }
    mutating func string(_ key: String, _ v: String, default d: String) { set(key, .string(v), isDefault: v == d) }

    mutating func activation(_ a: FusedActivation?, default d: FusedActivation?) {
        guard let a else { node.attributes[Keys.activation] = nil; return }
        set(Keys.activation, .string(a.rawValue), isDefault: a == d)
    }

    mutating func norm(_ n: Norm, weight: Int?, bias: Int?) {
        string(Keys.norm, n.kind.rawValue, default: FusedNormKind.layer.rawValue)
        float(Keys.epsilon, n.epsilon, default: 1e-6)
        if let weight, let c = n.weight { input(weight, c.name) }
        if let bias, let c = n.bias { input(bias, c.name) }
    }

    mutating func linear(_ l: Linear, layer: Int, weight: Int, bias: Int) {
        input(weight, l.weight.name)
        if let b = l.bias { input(bias, b.name) }
        node.attributes[Keys.legacyWeightScales(layer)] = nil
        switch l.precision {
        case .float32, .bfloat16, .float16:
            for key in [Keys.activationScale(layer), Keys.activationZero(layer), Keys.channelScales(layer)] { node.attributes[key] = nil }
        case .int8(let q):
            node.attributes[Keys.activationScale(layer)] = .float(q.activationScale)
            node.attributes[Keys.activationZero(layer)] = .int(Int(q.activationZero))
            node.attributes[Keys.channelScales(layer)] = q.channelScales.map { .tensor(Tensor(floats: $0, shape: [$0.count])) }
        }
    }
}

extension FusedPayload {
    /// Brings a graph read from a 1.0 or 1.1 file to 1.2 (Formats/CNX.md, "Reading 1.0 and 1.1
    /// int8 files"): every int8 weight's scales move from the node attribute into the weight's
    /// quantization, so the graph is written back as 1.2. A 1.2 graph is unchanged, and so is a
    /// node this runtime cannot read (the runtime refuses it, naming it, when it is loaded to run).
    public static func upgrade(_ graph: inout Graph) {
        for i in graph.nodes.indices where describes(graph.nodes[i].op) {
            guard let payload = try? FusedPayload(graph.nodes[i], in: graph) else { continue }
            for linear in payload.layers.values {
                guard case .int8(let q) = linear.precision, graph.initializers[linear.weight.name]?.quantization == nil else { continue }
                graph.initializers[linear.weight.name]?.quantization = Quantization(axis: 1, scales: q.weightScales)
            }
            payload.write(into: &graph.nodes[i])
        }
    }
}

/// `cnx.Features`: the norm over channels a feature map gets on its way out of the network
/// ("none" allowed: the map as it is); its scale and bias are inputs 1 and 2.
public struct FeaturesPayload: Sendable {
    public var kind: FusedNormKind
    public var epsilon: Float

    public init(_ node: Node) throws {
        guard let name = node.string(Keys.norm) else {
            kind = .layer
            epsilon = node.float(Keys.epsilon) ?? 1e-6
            return
        }
        guard let k = FusedNormKind(rawValue: name) else {
            throw CNXError("\(node.label): unknown norm '\(name)' (layer, rms, simple or none)")
        }
        kind = k
        epsilon = node.float(Keys.epsilon) ?? 1e-6
    }
}

// MARK: - Building payloads and nodes (the fuse passes)

extension FusedPayload {
    /// The operation the payload describes.
    public var op: OpType {
        switch self {
        case .stem: return .stem
        case .downsample: return .downsample
        case .block: return .block
        case .head: return .head
        }
    }

    var norm: Norm {
        switch self {
        case .stem(let p): return p.norm
        case .downsample(let p): return p.norm
        case .block(let p): return p.norm
        case .head(let p): return p.norm
        }
    }

    /// A new node for the payload, reading `input` (slot 0) and writing `outputs`. Its epsilons
    /// are written even when they are the default (as the converter has always written them).
    public func node(name: String, input: String, outputs: [String]) -> Node {
        var node = Node(name: name, op: op, inputs: [input], outputs: outputs)
        if norm.kind != .none { node.attributes[Keys.epsilon] = .float(norm.epsilon) }
        if case .block(let p) = self, let g = p.grn { node.attributes[Keys.grnEpsilon] = .float(g.epsilon) }
        write(into: &node)
        return node
    }
}

extension FeaturesPayload {
    public init(kind: FusedNormKind, epsilon: Float) {
        self.kind = kind
        self.epsilon = epsilon
    }

    /// A new `cnx.Features` node reading `input`, with the norm's scale and shift (by name) when
    /// it has them. The norm is always written; the epsilon unless the norm is "none".
    public func node(name: String, input: String, scale: String?, shift: String?, outputs: [String]) -> Node {
        var node = Node(name: name, op: .features, inputs: [input], outputs: outputs)
        node.attributes[Keys.norm] = .string(kind.rawValue)
        if kind != .none { node.attributes[Keys.epsilon] = .float(epsilon) }
        var w = NodeWriter(node: node)
        if let scale { w.input(OpSchema.of(.features).slot("ln_scale"), scale) }
        if let shift { w.input(OpSchema.of(.features).slot("ln_bias"), shift) }
        return w.node
    }
}
