import CNXGraph
import Foundation

/// One call of a reference kernel: the node and its input tensors in slot order (nil for an
/// omitted optional input), read by the slot names of the node's schema.
public typealias KernelCall = NodeInputs<Tensor>

extension NodeInputs where Value == Tensor {
    /// The float32 tensor in slot `slot`.
    public func float(_ slot: String) throws -> Tensor { try Kernels.float(input(slot)) }

    /// The float32 tensor in slot `slot`, nil when it is omitted.
    public func optionalFloat(_ slot: String) throws -> Tensor? { try optional(slot).map(Kernels.float) }
}

/// Computes a node's outputs from its inputs.
public typealias ReferenceKernel = (KernelCall) throws -> [Tensor]

/// The reference kernel of every operation type, in one table: the oracle that every optimised
/// path is compared with (ONNX semantics for ONNX operators, Formats/CNX.md for the fused ones).
/// The reference executor and constant folding evaluate nodes through it.
public enum ReferenceKernels {
    /// Every op type's kernel.
    public static let table: [OpType: ReferenceKernel] = Dictionary(uniqueKeysWithValues: OpType.allCases.map { ($0, make($0)) })

    /// The kernel of `op`.
    public static func kernel(_ op: OpType) -> ReferenceKernel { table[op]! }

    /// Evaluates `node` on `args` (nil for an omitted optional input).
    public static func evaluate(_ node: Node, _ args: [Tensor?]) throws -> [Tensor] {
        try kernel(node.op)(KernelCall(node: node, values: args))
    }

    /// The table's entries; the switch makes the compiler ask for a kernel for every new op.
    static func make(_ op: OpType) -> ReferenceKernel {
        typealias K = Kernels
        switch op {
        case .add, .sub, .mul, .div, .pow: return { [try K.binary($0.node.op, $0.input("A"), $0.input("B"))] }
        case .sqrt: return { [try K.unary($0.input("X")) { sqrtf($0) }] }
        case .tanh: return { [try K.unary($0.input("X")) { tanhf($0) }] }
        case .relu: return { [try K.unary($0.input("X")) { max($0, 0) }] }
        case .sigmoid: return { [try K.unary($0.input("X")) { 1 / (1 + expf(-$0)) }] }
        case .neg: return { [try K.unary($0.input("X")) { -$0 }] }
        case .reciprocal: return { [try K.unary($0.input("X")) { 1 / $0 }] }
        case .erf: return { [try K.erf($0.float("X"))] }
        case .swish:
            return { call in
                let alpha = call.node.float("alpha") ?? 1
                return [try K.unary(call.input("X")) { $0 / (1 + expf(-alpha * $0)) }]
            }
        case .gelu: return { [try K.gelu($0)] }
        case .conv: return { [try K.conv($0.node, $0.float("X"), $0.float("W"), $0.optionalFloat("B"))] }
        case .matMul: return { [try K.matMul($0.float("A"), $0.float("B"))] }
        case .gemm: return { [try K.gemm($0.node, $0.float("A"), $0.float("B"), $0.optionalFloat("C"))] }
        case .reduceMean, .reduceL2, .reduceSum: return { [try K.reduce($0.node, $0.float("data"), axesInput: $0.optional("axes"))] }
        case .reduceProd: return { [try K.reduceProduct($0.node, $0.input("data"), axesInput: $0.optional("axes"))] }
        case .rmsNormalization: return { [try K.rmsNormalization($0)] }
        case .simpleNorm: return { [try K.simpleNorm($0)] }
        case .layerNormalization: return { [try K.layerNormalization($0)] }
        case .globalAveragePool: return { [try K.globalAveragePool($0.float("X"))] }
        case .transpose:
            return { call in
                let x = try call.input("data")
                return [try K.transpose(x, call.node.ints("perm") ?? Array((0..<x.shape.count).reversed()))]
            }
        case .reshape:
            return { [try K.reshape($0.input("data"), K.ints($0.input("shape"), "shape"), allowZero: $0.node.int("allowzero") == 1)] }
        case .flatten: return { [try K.flatten($0.input("input"), axis: $0.node.int("axis") ?? 1)] }
        case .squeeze: return { [try K.squeeze($0)] }
        case .unsqueeze: return { [try K.unsqueeze($0)] }
        case .concat:
            return { call in [try K.concat((0..<call.values.count).map { try call.input($0) }, axis: call.node.int("axis") ?? 0)] }
        case .gather: return { [try K.gather($0.input("data"), $0.input("indices"), axis: $0.node.int("axis") ?? 0)] }
        case .shape: return { [try K.shape($0)] }
        case .slice: return { [try K.slice($0)] }
        case .expand: return { [try K.expand($0.input("input"), K.ints($0.input("shape"), "shape"))] }
        case .cast:
            return { call in
                guard let to = call.node.int("to"), let dtype = DType(rawValue: Int32(to)) else {
                    throw CNXError("unsupported target type")
                }
                return [try K.cast(call.input("input"), to: dtype)]
            }
        case .constantOfShape: return { [try K.constantOfShape($0)] }
        case .range: return { [try K.range($0.input("start"), $0.input("limit"), $0.input("delta"))] }
        case .identity, .dropout:
            return { call in
                if call.node.outputs.count > 1 && !call.node.outputs[1].isEmpty { throw CNXError("Dropout's mask output is not supported") }
                return [try call.input(0)]
            }
        case .constant: return { _ in throw CNXError("Constant nodes are folded by the reader") }
        // The fused operations: FusedKernels' reference implementations.
        case .linear, .grn, .stem, .downsample, .block, .head, .features: return { try K.evaluateFused($0.node, $0.values) }
        }
    }
}
