import CKernels
import XCTest

/// The stem's patch matrix (cnx_stem_patches_f32): on every kernel path it equals the
/// element-by-element specification, and patches times the packed weight through the GEMM (with
/// bias and GELU, as the runtime runs a stem) is the convolution computed from its definition,
/// on odd sizes, both layouts, the strides and paddings timm's stems use and others.
final class FastStemTests: XCTestCase {
    struct Case {
        let cin, h, w, k, stride, pad, cout: Int
        let nhwc: Bool
        var oh: Int { (h + 2 * pad - k) / stride + 1 }
        var ow: Int { (w + 2 * pad - k) / stride + 1 }
        var label: String { "\(nhwc ? "nhwc" : "nchw") cin \(cin) \(h)x\(w) k \(k) stride \(stride) pad \(pad) cout \(cout)" }
    }

    static let cases: [Case] = [
        Case(cin: 3, h: 17, w: 23, k: 3, stride: 2, pad: 1, cout: 24, nhwc: false),  // overlap stem, first conv
        Case(cin: 24, h: 9, w: 12, k: 3, stride: 2, pad: 1, cout: 40, nhwc: true),  // overlap stem, second conv
        Case(cin: 3, h: 19, w: 21, k: 4, stride: 4, pad: 0, cout: 13, nhwc: false),  // patchify, rows left over
        Case(cin: 3, h: 29, w: 31, k: 9, stride: 4, pad: 4, cout: 33, nhwc: false),  // 9x9 stride 4
        Case(cin: 5, h: 7, w: 5, k: 5, stride: 1, pad: 2, cout: 7, nhwc: true),
        Case(cin: 1, h: 3, w: 3, k: 3, stride: 3, pad: 2, cout: 1, nhwc: false),  // more padding than input
        Case(cin: 2, h: 2, w: 9, k: 1, stride: 2, pad: 0, cout: 3, nhwc: true),
    ]

    /// The convolution at output (oy, ox, o), in Double, from its definition.
    func naive(_ c: Case, _ x: [Float], _ weight: [Float], _ bias: [Float], oy: Int, ox: Int, o: Int) -> Double {
        var s = Double(bias[o])
        for ch in 0..<c.cin {
            for ky in 0..<c.k {
                for kx in 0..<c.k {
                    let iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx
                    guard iy >= 0, iy < c.h, ix >= 0, ix < c.w else { continue }
                    let v = c.nhwc ? x[(iy * c.w + ix) * c.cin + ch] : x[(ch * c.h + iy) * c.w + ix]
                    // PyTorch's weight [cout, cin, k, k].
                    s += Double(v) * Double(weight[((o * c.cin + ch) * c.k + ky) * c.k + kx])
                }
            }
        }
        return s
    }

    func testPatchesTimesWeightIsTheConvolutionOnEveryPath() throws {
        var rng = LCG(2024)
        for c in Self.cases {
            let row = c.cin * c.k * c.k
            let x = rng.floats(c.cin * c.h * c.w), weight = rng.floats(c.cout * row), bias = rng.floats(c.cout)
            // The weight as the runtime holds it: [row, cout] in the layout's row order.
            var matrix = [Float](repeating: 0, count: row * c.cout)
            for o in 0..<c.cout {
                for ch in 0..<c.cin {
                    for ky in 0..<c.k {
                        for kx in 0..<c.k {
                            let r = c.nhwc ? (ky * c.k + kx) * c.cin + ch : (ch * c.k + ky) * c.k + kx
                            matrix[r * c.cout + o] = weight[((o * c.cin + ch) * c.k + ky) * c.k + kx]
                        }
                    }
                }
            }
            let packed = FloatBuffer(repeating: .nan, count: cnx_gemm_packed_b_floats(Int64(row), Int64(c.cout)))
            matrix.withUnsafeBufferPointer { cnx_gemm_pack_b($0.baseAddress, Int64(row), Int64(c.cout), packed.pointer) }
            let input = FloatBuffer(x), b = FloatBuffer(bias)
            let spec = FloatBuffer(repeating: .nan, count: c.ow * row), patches = FloatBuffer(repeating: .nan, count: c.ow * row)
            let y = FloatBuffer(repeating: .nan, count: c.ow * c.cout)
            forEachISA { _, name in
                for oy in 0..<c.oh {
                    cnx_stem_patches_f32_ref(
                        input.const, Int64(c.cin), Int64(c.h), Int64(c.w), c.nhwc ? 1 : 0, Int64(c.k), Int64(c.stride),
                        Int64(c.pad), Int64(oy), Int64(c.ow), spec.pointer)
                    cnx_stem_patches_f32(
                        input.const, Int64(c.cin), Int64(c.h), Int64(c.w), c.nhwc ? 1 : 0, Int64(c.k), Int64(c.stride),
                        Int64(c.pad), Int64(oy), Int64(c.ow), patches.pointer)
                    XCTAssertEqual(patches.array, spec.array, "\(c.label) \(name) row \(oy): patches")
                    cnx_gemm_f32(
                        Int64(c.ow), Int64(c.cout), Int64(row), patches.const, Int64(row), packed.const, b.const, CNX_ACT_GELU,
                        nil, 0, y.pointer, Int64(c.cout))
                    for ox in 0..<c.ow {
                        for o in 0..<c.cout {
                            let conv = naive(c, x, weight, bias, oy: oy, ox: ox, o: o)
                            let expected = geluExact(conv)
                            let got = Double(y.pointer[ox * c.cout + o])
                            // float32 sums of up to 243 products of values in [-1, 1]; GELU within 1e-6.
                            XCTAssertEqual(
                                got, expected, accuracy: 1e-5 * max(1, Double(row).squareRoot()),
                                "\(c.label) \(name) at (\(oy), \(ox), \(o))")
                        }
                    }
                }
            }
        }
    }
}
