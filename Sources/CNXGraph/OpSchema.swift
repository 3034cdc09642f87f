/// What one operation type is, in one record: its named input slots (with the element types a
/// slot may hold), its outputs, its typed attributes and its shape function. `OpSchema.of(op)`
/// is the one table the verifier and the shape inference read; the reference kernels are bound
/// to the same op types in the runtime's kernel table (`ReferenceKernels`).
///
/// Adding an operation: a case in `OpType`; its record in `OpSchema.make` and its kernel in
/// `ReferenceKernels.make` (the compiler asks for both); a shape function in `ShapeInference`
/// unless an existing one fits; a sample node in the runtime tests' `OpTableTests.sample` (the
/// compiler asks again), where the shape function is checked against the kernel.
public struct OpSchema: @unchecked Sendable {
    public let op: OpType
    /// The inputs in slot order. A slot that is not required may be omitted at the end or given
    /// as an empty name.
    public let inputs: [InputSlot]
    /// True when the last slot repeats without bound (Concat).
    public let variadic: Bool
    /// The outputs in order; the first is always required, the others may be empty names.
    public let outputs: [String]
    /// Every attribute the operation reads, with its kind.
    public let attributes: [AttributeSchema]
    /// False for the ONNX operators, which may carry attributes of other opsets that the
    /// project does not read; true for the project's own operations, whose every attribute is
    /// listed here (an unknown one is refused rather than ignored).
    public let closedAttributes: Bool
    /// The element types and shapes of the outputs from what is known of the inputs.
    public let shape: ShapeFunction

    public typealias ShapeFunction = (ShapeInference.Context) throws -> [ValueFacts]

    /// How many inputs a node of this type may have.
    public var arity: ClosedRange<Int> {
        let minimum = (inputs.lastIndex { $0.required } ?? -1) + 1
        return minimum...(variadic ? Int.max : inputs.count)
    }

    /// The index of the input slot `name`. A name the schema does not have is a programming error.
    public func slot(_ name: String) -> Int {
        guard let i = inputs.firstIndex(where: { $0.name == name }) else {
            preconditionFailure("\(op.rawValue) has no input slot '\(name)'")
        }
        return i
    }

    /// The schema of the attribute `name`, nil when the operation does not read it.
    public func attribute(_ name: String) -> AttributeSchema? { attributes.first { $0.name == name } }

    /// "2 (A, B)", "2 to 3 (X, W, B)", "1 or more (inputs)": for messages.
    public var arityDescription: String {
        let r = arity
        let count =
            r.upperBound == Int.max
            ? "\(r.lowerBound) or more"
            : r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "\(r.lowerBound) to \(r.upperBound)"
        return inputs.isEmpty ? count : "\(count) (\(inputs.map(\.name).joined(separator: ", ")))"
    }

    /// The schema of `op`.
    public static func of(_ op: OpType) -> OpSchema { table[op]! }

    /// Every operation's schema, by op type.
    public static let table: [OpType: OpSchema] = Dictionary(uniqueKeysWithValues: OpType.allCases.map { ($0, make($0)) })
}

/// One input of an operation.
public struct InputSlot: Sendable {
    public let name: String
    public let required: Bool
    /// The element types the slot may hold; nil: any (ONNX operators, whose types the kernels check).
    public let dtypes: [DType]?

    public init(_ name: String, required: Bool = true, dtypes: [DType]? = nil) {
        self.name = name
        self.required = required
        self.dtypes = dtypes
    }
}

/// The kind of value an attribute holds.
public enum AttributeKind: String, Sendable {
    case int, float, string, ints, floats, tensor
}

extension Attribute {
    public var kind: AttributeKind {
        switch self {
        case .int: return .int
        case .float: return .float
        case .string: return .string
        case .ints: return .ints
        case .floats: return .floats
        case .tensor: return .tensor
        }
    }
}

/// One attribute of an operation: its name, kind, when it is required and what its absence means.
public struct AttributeSchema: @unchecked Sendable {
    public enum Requirement: Sendable, Equatable {
        case optional
        case required
        /// Required exactly when the tensor in this input slot is int8 (an int8 GEMM layer's
        /// quantization parameters).
        case whenInt8(slot: String)
    }

    public let name: String
    public let kind: AttributeKind
    public let requirement: Requirement
    /// The value a reader assumes when the attribute is absent, where it is a constant.
    public let defaultValue: Attribute?

    public init(_ name: String, _ kind: AttributeKind, _ requirement: Requirement = .optional, default value: Attribute? = nil) {
        self.name = name
        self.kind = kind
        self.requirement = requirement
        defaultValue = value
    }
}

extension OpType {
    /// This operation's schema.
    public var schema: OpSchema { OpSchema.of(self) }
}

extension Node {
    /// This node's schema.
    public var schema: OpSchema { OpSchema.of(op) }

    /// The value name in input slot `slot` (by the schema's slot name), nil when it is omitted.
    public func input(_ slot: String) -> String? {
        let i = schema.slot(slot)
        return i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil
    }
}

/// A node's inputs in slot order (nil for an omitted one), read by the slot names of its
/// schema: the facts a shape function sees (`ShapeInference.Context`), the tensors a reference
/// kernel computes on (`KernelCall`).
public struct NodeInputs<Value> {
    public let node: Node
    public let values: [Value?]

    public init(node: Node, values: [Value?]) {
        self.node = node
        self.values = values
    }

    /// Input `i`; throws when it is omitted (or, for facts, unknown).
    public func input(_ i: Int) throws -> Value {
        guard i < values.count, let v = values[i] else {
            let slots = node.schema.inputs
            let name = i < slots.count ? " (\(slots[i].name))" : ""
            throw CNXError("input \(i)\(name) is missing")
        }
        return v
    }

    /// The input in slot `slot`; throws when it is omitted.
    public func input(_ slot: String) throws -> Value { try input(node.schema.slot(slot)) }

    /// Input `i`, nil when it is omitted.
    public func optional(_ i: Int) -> Value? { i < values.count ? values[i] : nil }

    /// The input in slot `slot`, nil when it is omitted.
    public func optional(_ slot: String) -> Value? { optional(node.schema.slot(slot)) }
}

// MARK: The table

extension OpSchema {
    private init(
        _ op: OpType, inputs: [InputSlot], variadic: Bool = false, outputs: [String] = ["Y"],
        attributes: [AttributeSchema] = [], shape: @escaping ShapeFunction
    ) {
        self.op = op
        self.inputs = inputs
        self.variadic = variadic
        self.outputs = outputs
        self.attributes = attributes
        closedAttributes = op.isFused
        self.shape = shape
    }

    /// The record of each operation. ONNX operators keep their ONNX slot and attribute names;
    /// the fused operations' are those of Formats/CNX.md.
    static func make(_ op: OpType) -> OpSchema {
        typealias S = ShapeInference
        let x = [InputSlot("X")]
        let reduceAttributes = [
            AttributeSchema("axes", .ints), AttributeSchema("keepdims", .int, default: .int(1)),
            AttributeSchema("noop_with_empty_axes", .int, default: .int(0)),
        ]
        let normAttributes = [
            AttributeSchema("axis", .int, default: .int(-1)), AttributeSchema("epsilon", .float, default: .float(1e-5)),
            AttributeSchema("stash_type", .int, default: .int(1)),
        ]
        switch op {
        case .add, .sub, .mul, .div, .pow:
            return OpSchema(op, inputs: [InputSlot("A"), InputSlot("B")], outputs: ["C"], shape: S.binary)
        case .sqrt, .erf, .tanh, .relu, .sigmoid, .neg, .reciprocal:
            return OpSchema(op, inputs: x, shape: S.same)
        case .gelu:
            return OpSchema(op, inputs: x, attributes: [AttributeSchema("approximate", .string, default: .string("none"))], shape: S.same)
        case .swish:
            return OpSchema(op, inputs: x, attributes: [AttributeSchema("alpha", .float, default: .float(1))], shape: S.same)
        case .conv:
            return OpSchema(
                op, inputs: [InputSlot("X"), InputSlot("W"), InputSlot("B", required: false)],
                attributes: [
                    AttributeSchema("auto_pad", .string, default: .string("NOTSET")), AttributeSchema("dilations", .ints),
                    AttributeSchema("group", .int, default: .int(1)), AttributeSchema("kernel_shape", .ints),
                    AttributeSchema("pads", .ints), AttributeSchema("strides", .ints),
                ], shape: S.conv)
        case .matMul:
            return OpSchema(op, inputs: [InputSlot("A"), InputSlot("B")], shape: S.matMul)
        case .gemm:
            return OpSchema(
                op, inputs: [InputSlot("A"), InputSlot("B"), InputSlot("C", required: false)],
                attributes: [
                    AttributeSchema("alpha", .float, default: .float(1)), AttributeSchema("beta", .float, default: .float(1)),
                    AttributeSchema("transA", .int, default: .int(0)), AttributeSchema("transB", .int, default: .int(0)),
                ], shape: S.gemm)
        case .reduceMean, .reduceL2, .reduceSum, .reduceProd:
            return OpSchema(
                op, inputs: [InputSlot("data"), InputSlot("axes", required: false)], outputs: ["reduced"],
                attributes: reduceAttributes, shape: S.reduce)
        case .layerNormalization:
            return OpSchema(
                op, inputs: [InputSlot("X"), InputSlot("Scale"), InputSlot("B", required: false)],
                outputs: ["Y", "Mean", "InvStdDev"], attributes: normAttributes, shape: S.same)
        case .rmsNormalization:
            return OpSchema(op, inputs: [InputSlot("X"), InputSlot("scale")], attributes: normAttributes, shape: S.same)
        case .globalAveragePool:
            return OpSchema(op, inputs: x, shape: S.globalAveragePool)
        case .transpose:
            return OpSchema(
                op, inputs: [InputSlot("data")], outputs: ["transposed"], attributes: [AttributeSchema("perm", .ints)], shape: S.transpose)
        case .reshape:
            return OpSchema(
                op, inputs: [InputSlot("data"), InputSlot("shape")], outputs: ["reshaped"],
                attributes: [AttributeSchema("allowzero", .int, default: .int(0))], shape: S.reshape)
        case .flatten:
            return OpSchema(
                op, inputs: [InputSlot("input")], outputs: ["output"],
                attributes: [AttributeSchema("axis", .int, default: .int(1))], shape: S.flatten)
        case .squeeze, .unsqueeze:
            return OpSchema(
                op, inputs: [InputSlot("data"), InputSlot("axes", required: false)],
                outputs: [op == .squeeze ? "squeezed" : "expanded"], attributes: [AttributeSchema("axes", .ints)], shape: S.squeeze)
        case .concat:
            return OpSchema(
                op, inputs: [InputSlot("inputs")], variadic: true, outputs: ["concat_result"],
                attributes: [AttributeSchema("axis", .int, default: .int(0))], shape: S.concat)
        case .gather:
            return OpSchema(
                op, inputs: [InputSlot("data"), InputSlot("indices")], outputs: ["output"],
                attributes: [AttributeSchema("axis", .int, default: .int(0))], shape: S.gather)
        case .shape:
            return OpSchema(
                op, inputs: [InputSlot("data")], outputs: ["shape"],
                attributes: [AttributeSchema("start", .int, default: .int(0)), AttributeSchema("end", .int)], shape: S.shapeOf)
        case .slice:
            // Before opset 10, starts, ends and axes were attributes.
            return OpSchema(
                op,
                inputs: [
                    InputSlot("data"), InputSlot("starts", required: false), InputSlot("ends", required: false),
                    InputSlot("axes", required: false), InputSlot("steps", required: false),
                ], outputs: ["output"],
                attributes: [AttributeSchema("starts", .ints), AttributeSchema("ends", .ints), AttributeSchema("axes", .ints)],
                shape: S.slice)
        case .expand:
            return OpSchema(op, inputs: [InputSlot("input"), InputSlot("shape")], outputs: ["output"], shape: S.expand)
        case .cast:
            return OpSchema(
                op, inputs: [InputSlot("input")], outputs: ["output"],
                attributes: [
                    AttributeSchema("to", .int, .required), AttributeSchema("saturate", .int, default: .int(1)),
                    AttributeSchema("round_mode", .string),
                ], shape: S.cast)
        case .constantOfShape:
            return OpSchema(
                op, inputs: [InputSlot("input")], outputs: ["output"], attributes: [AttributeSchema("value", .tensor)],
                shape: S.constantOfShape)
        case .range:
            return OpSchema(op, inputs: [InputSlot("start"), InputSlot("limit"), InputSlot("delta")], outputs: ["output"], shape: S.range)
        case .identity:
            return OpSchema(op, inputs: [InputSlot("input")], outputs: ["output"], shape: S.passThrough)
        case .dropout:
            return OpSchema(
                op, inputs: [InputSlot("data"), InputSlot("ratio", required: false), InputSlot("training_mode", required: false)],
                outputs: ["output", "mask"], attributes: [AttributeSchema("seed", .int), AttributeSchema("ratio", .float)],
                shape: S.passThrough)
        case .constant:
            return OpSchema(
                op, inputs: [], outputs: ["output"],
                attributes: [
                    AttributeSchema("value", .tensor), AttributeSchema("value_float", .float), AttributeSchema("value_floats", .floats),
                    AttributeSchema("value_int", .int), AttributeSchema("value_ints", .ints), AttributeSchema("value_string", .string),
                ], shape: S.constant)

        // The project's own operations (Formats/CNX.md).
        case .linear:
            return OpSchema(
                op, inputs: [InputSlot("X", dtypes: f32), InputSlot("W", dtypes: f32), InputSlot("B", required: false, dtypes: f32)],
                attributes: [AttributeSchema("activation", .string)], shape: S.linear)
        case .grn:
            return OpSchema(
                op, inputs: [InputSlot("X", dtypes: f32), InputSlot("gamma", dtypes: f32), InputSlot("beta", dtypes: f32)],
                attributes: [AttributeSchema("grn_epsilon", .float, default: .float(1e-6))], shape: S.same)
        case .simpleNorm:
            return OpSchema(
                op, inputs: [InputSlot("X", dtypes: f32), InputSlot("scale", dtypes: f32)],
                attributes: [AttributeSchema("epsilon", .float, default: .float(1e-5))], shape: S.same)
        case .stem:
            return OpSchema(
                op, inputs: convolutionAndNormInputs,
                attributes: convolutionAndNormAttributes(convolution: [
                    AttributeSchema("stride", .int), AttributeSchema("pad", .int, default: .int(0)),
                    AttributeSchema("input_layout", .string, default: .string("nchw")), AttributeSchema("activation", .string),
                ]), shape: S.stem)
        case .downsample:
            return OpSchema(
                op, inputs: convolutionAndNormInputs, attributes: convolutionAndNormAttributes(convolution: []), shape: S.downsample)
        case .block:
            return OpSchema(
                op,
                inputs: [
                    InputSlot("X", dtypes: f32), InputSlot("dw_weight", dtypes: depthwiseWeight), InputSlot("dw_bias", dtypes: f32),
                    InputSlot("W1", dtypes: gemmWeight), InputSlot("B1", dtypes: f32),
                    InputSlot("W2", dtypes: gemmWeight), InputSlot("B2", dtypes: f32),
                    InputSlot("grn_gamma", required: false, dtypes: f32), InputSlot("grn_beta", required: false, dtypes: f32),
                ],
                attributes: normAndEpsilon + [
                    AttributeSchema("grn_epsilon", .float, default: .float(1e-6)),
                    AttributeSchema("activation", .string, default: .string("gelu")),
                ] + int8Layer(1, weight: "W1") + int8Layer(2, weight: "W2"), shape: S.same)
        case .head:
            return OpSchema(
                op,
                inputs: [
                    InputSlot("X", dtypes: f32), InputSlot("W", required: false, dtypes: gemmWeight),
                    InputSlot("B", required: false, dtypes: f32), InputSlot("W2", required: false, dtypes: gemmWeight),
                    InputSlot("B2", required: false, dtypes: f32),
                    InputSlot("ln_scale", required: false, dtypes: f32), InputSlot("ln_bias", required: false, dtypes: f32),
                ],
                attributes: normAndEpsilon + [
                    AttributeSchema("norm_first", .int, default: .int(0)), AttributeSchema("activation", .string),
                ] + int8Layer(1, weight: "W") + int8Layer(2, weight: "W2"), shape: S.head)
        case .features:
            return OpSchema(
                op,
                inputs: [
                    InputSlot("X", dtypes: f32), InputSlot("ln_scale", required: false, dtypes: f32),
                    InputSlot("ln_bias", required: false, dtypes: f32),
                ],
                attributes: normAndEpsilon, shape: S.features)
        }
    }

    private static let f32: [DType] = [.float32]
    /// A fused operation's GEMM weight: float32, int8 with its layer's quantization attributes,
    /// or bfloat16 / float16 (half-precision layers, Formats/CNX.md).
    private static let gemmWeight: [DType] = [.float32, .int8, .bfloat16, .float16]
    /// A block's depthwise weight: float32, or bfloat16 for a depthwise convolution computed on
    /// bfloat16 (its input rounded too; Formats/CNX.md, `cnx.Block`).
    private static let depthwiseWeight: [DType] = [.float32, .bfloat16]

    /// The inputs of `cnx.Stem` and `cnx.Downsample`, each one k x k convolution as a GEMM and a
    /// norm over channels. The bias is required (Formats/CNX.md): a convolution without one gets
    /// zeros.
    private static let convolutionAndNormInputs = [
        InputSlot("X", dtypes: f32), InputSlot("W", dtypes: gemmWeight), InputSlot("B", dtypes: f32),
        InputSlot("ln_scale", required: false, dtypes: f32), InputSlot("ln_bias", required: false, dtypes: f32),
    ]

    /// The attributes of `cnx.Stem` and `cnx.Downsample`: the kernel size, `convolution`'s other
    /// settings, the norm's and layer 1's int8 quantization.
    private static func convolutionAndNormAttributes(convolution: [AttributeSchema]) -> [AttributeSchema] {
        [AttributeSchema("kernel", .int, .required)] + convolution + normAndEpsilon + int8Layer(1, weight: "W")
    }

    private static let normAndEpsilon = [
        AttributeSchema("norm", .string, default: .string("layer")), AttributeSchema("epsilon", .float, default: .float(1e-6)),
    ]

    /// The attributes of int8 GEMM layer `layer` whose weight is in slot `weight`.
    private static func int8Layer(_ layer: Int, weight: String) -> [AttributeSchema] {
        [
            AttributeSchema(LayerQuantizationKeys(layer).activationScale, .float, .whenInt8(slot: weight)),
            AttributeSchema(LayerQuantizationKeys(layer).activationZero, .int, .whenInt8(slot: weight)),
            AttributeSchema(LayerQuantizationKeys(layer).weightScales, .tensor, .whenInt8(slot: weight)),
            AttributeSchema(LayerQuantizationKeys(layer).channelScales, .tensor),
        ]
    }
}

/// The attribute names of int8 GEMM layer `layer` (1 or 2) of a fused operation.
public struct LayerQuantizationKeys: Sendable {
    public let layer: Int
    public init(_ layer: Int) { self.layer = layer }
    /// `a<L>_scale`: the u8 activation's scale.
    public var activationScale: String { "a\(layer)_scale" }
    /// `a<L>_zero`: the u8 activation's zero point.
    public var activationZero: String { "a\(layer)_zero" }
    /// `w<L>_scales`: the per-output-channel weight scales.
    public var weightScales: String { "w\(layer)_scales" }
    /// `a<L>_channel_scales`: the optional input-channel equalization.
    public var channelScales: String { "a\(layer)_channel_scales" }
}
