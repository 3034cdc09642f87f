import CKernels
import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXReference
@testable import CNXRuntime
import CNXTestSupport
import XCTest

/// The fast int8 path against the reference int8 arithmetic of Formats/CNX.md ("int8 layers").
///
/// What is promised identical is the integer part of every int8 layer: the u8 codes of a given
/// float32 input (`cnx_quantize_u8` and the reference quantizer both multiply by the float32
/// reciprocal and round half to even) and the dequantized GEMM (exact int32 sums, then
/// `float(acc - zero · colsum) · (a_scale · s[j]) + B[j]` without FMA contraction). That is
/// compared bit for bit, layer by layer, on every int8 path this CPU has.
///
/// A whole model is not promised identical: the float32 parts around the layers (the fast norm
/// and GELU kernels, the equalization applied as a multiplication inside the norm rather than
/// as a division) round differently in the last bit, and an activation that lands within that
/// distance of a u8 rounding boundary takes the other code. So whole models are compared by how
/// many of the int8 layers' integer steps that moves, not by an SQNR.
final class Int8RuntimeTests: XCTestCase {
    static let fixtures = ["timm_linear_op17", "v2_op17", "reference_op13"]

    func quantized(_ name: String) throws -> (graph: Graph, float: Graph, input: Tensor) {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
        var graph = try ONNXReader.load(path: entry.model)
        _ = try Pipeline.standard.run(&graph)
        let x = try NPY.read(path: entry.path(entry.cases[0].input))
        var options = Quantizer.Options()
        options.quantizeHead = true  // the head's layers too: every kind of int8 layer
        options.endsPrecision = nil  // the stem float32: a bfloat16 stem rounds its input on the dot path only
        let q = try Quantizer.quantize(graph, calibration: gaussian([8] + Array(x.shape.dropFirst()), seed: 5), options: options)
        return (q.graph, graph, x)
    }

    /// Inputs for a layer: spread over its calibrated u8 range and past both ends (clipping),
    /// with values exactly on the rounding boundaries (k + 0.5 steps), where a different
    /// rounding would show.
    func inputs(rows: Int, k: Int, _ q: Int8Parameters, seed: UInt64) -> Tensor {
        let lo = -Float(q.activationZero) * q.activationScale, hi = (255 - Float(q.activationZero)) * q.activationScale
        var state = seed
        let values: [Float] = (0..<(rows * k)).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24)
            if i % 7 == 0 { return (Float(Int(u * 255)) + 0.5 - Float(q.activationZero)) * q.activationScale }
            return lo - 0.1 * (hi - lo) + u * 1.2 * (hi - lo)
        }
        return Tensor(floats: values, shape: [rows, k])
    }

    func testFastInt8LayersEqualTheReferenceBitForBit() throws {
        var layers = 0
        for name in Self.fixtures {
            let (graph, _, _) = try quantized(name)
            for node in graph.nodes where FusedPayload.describes(node.op) {
                for (number, linear) in try FusedPayload(node, in: graph).layers.sorted(by: { $0.key < $1.key }) {
                    guard case .int8(var q) = linear.precision else { continue }
                    // The equalization is applied by the float32 code that makes the input.
                    q.channelScales = nil
                    let layer = Linear(weight: linear.weight, bias: linear.bias, precision: .int8(q))
                    let (k, n, rows) = (layer.inputs, layer.outputs, 37)
                    let x = inputs(rows: rows, k: k, q, seed: UInt64(layers + 1))
                    let referenceCodes = Kernels.quantizeReference(x, q)
                    let reference = try Kernels.pointwise(x, layer)
                    let packed = try PackedQMatrix(weight: layer.weight.tensor, q)
                    forEachInt8Path { path in
                        let what = "\(name) \(node.name) layer \(number) (\(path))"
                        var codes = [UInt8](repeating: 0, count: rows * k)
                        x.withUnsafeFloats { xp in packed.quantize(xp.baseAddress!, count: rows * k, into: &codes) }
                        XCTAssertEqual(codes, referenceCodes, "u8 codes: \(what)")
                        var out = [Float](repeating: .nan, count: rows * n)
                        withFloatPointers([layer.bias?.tensor]) { b in
                            packed.multiply(
                                codes, rows: rows, lda: k, bias: b[0], act: CNX_ACT_NONE, residual: nil, ldr: 0, into: &out, ldo: n)
                        }
                        XCTAssertEqual(
                            out.map(\.bitPattern), reference.withUnsafeFloats { $0.map(\.bitPattern) }, "dequantized GEMM: \(what)")
                    }
                    layers += 1
                }
            }
        }
        XCTAssertGreaterThan(layers, 30, "the fixtures' int8 layers, head included")
    }

    /// Whole models, every GEMM layer int8 but the stem: the fast path's logits against the
    /// reference executor's, in units of the head's integer step (a_scale · s[j] for logit j).
    /// Every value that passes from one int8 layer to the next goes through u8 codes, so the two
    /// agree exactly unless a float32 rounding difference moves some activation across a u8
    /// boundary; one such move in the head's input shifts a logit by |w_q| <= 127 steps. On
    /// these fixtures every logit is identical (this CPU); the test allows one boundary move in
    /// a tenth of them and nothing larger.
    func testFastInt8ModelsAgreeWithTheReferenceUpToU8Boundaries() throws {
        for name in Self.fixtures {
            let (graph, float, x) = try quantized(name)
            let reference = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: x])[graph.outputs[0].name]!
            let fast = try Model(graph: graph, threads: 2).predict(x)
            // The head's last layer makes the logits: its step for output j is a_scale · s[j].
            let head = try XCTUnwrap(graph.nodes.last { $0.op == .head })
            guard case .head(let p) = try FusedPayload(head, in: graph), case .int8(let q)? = (p.fc2 ?? p.fc1)?.precision else {
                return XCTFail("\(name): the head is not int8")
            }
            let n = q.weightScales.count
            var worst = 0.0, exact = 0
            let (f, r) = (fast.floats, reference.floats)
            for i in 0..<f.count {
                let steps = Double(abs(f[i] - r[i])) / Double(q.activationScale * q.weightScales[i % n])
                worst = max(worst, steps)
                if f[i] == r[i] { exact += 1 }
            }
            let sqnrFloat = OutputError.sqnr(reference, try Model(graph: float).predict(x))
            print(
                "\(name): fast vs reference int8: \(exact) of \(f.count) logits identical, worst \(String(format: "%.2f", worst)) integer steps of the head; int8 vs float32 \(String(format: "%.1f", sqnrFloat)) dB"
            )
            XCTAssertLessThanOrEqual(
                worst, 127, "\(name): the fast and reference int8 paths differ by more than one u8 step of the head's input")
            XCTAssertGreaterThanOrEqual(Double(exact), 0.9 * Double(f.count), "\(name): most logits are identical")
        }
    }

    /// Runs `body` on every int8 kernel path this CPU supports, forced in turn.
    func forEachInt8Path(_ body: (String) throws -> Void) rethrows {
        defer { cnx_qisa_force(-1) }
        for isa in [
            CNX_QISA_SCALAR, CNX_QISA_AVX2, CNX_QISA_AVX_VNNI, CNX_QISA_AVX512_VNNI, CNX_QISA_NEON, CNX_QISA_DOTPROD, CNX_QISA_I8MM,
        ]
        where cnx_qisa_supported(isa) != 0 {
            cnx_qisa_force(Int32(isa.rawValue))
            try body(String(cString: cnx_qisa_name(isa)))
        }
    }
}
