import CKernels
import Foundation
import XCTest

/// The bfloat16 depthwise convolution (cnx_dwconv_nhwc_rows_bf16, cnx_half.h): the dot path
/// against its scalar twin bit for bit, and the twin against the convolution computed in Double
/// from inputs rounded to bfloat16 by their definition, and against the float32 convolution
/// within bfloat16's rounding.
final class DepthwiseBF16Tests: XCTestCase {
    /// (h, w, c, k, first output row, end row): ConvNeXt's stage shapes, odd widths and channel
    /// counts (the 7-pixel blocks' tails, masked channel blocks), k = 3 and 5, partial row ranges.
    private let shapes: [(Int, Int, Int, Int, Int, Int)] = [
        (14, 14, 384, 7, 0, 14), (7, 7, 768, 7, 0, 7), (12, 12, 1024, 7, 3, 9), (9, 13, 40, 7, 0, 9),
        (5, 8, 17, 3, 1, 5), (6, 11, 33, 5, 0, 6), (3, 2, 20, 7, 0, 3), (1, 1, 16, 7, 0, 1), (20, 30, 64, 7, 5, 20),
        (40, 33, 32, 7, 0, 40),
    ]

    private func inputs(_ rng: inout LCG, h: Int, w: Int, c: Int, k: Int) -> ([Float], [Float], [Float]) {
        var x = rng.floats(h * w * c, scale: 3)
        // Values the rounding treats specially: zeros of both signs, denormals (as zero), ties.
        let special: [Float] = [0, -0.0, .leastNormalMagnitude / 16, -.leastNormalMagnitude / 3, 1.00390625, -2.01171875, 65504, 1e-30]
        for (i, v) in special.enumerated() where i * 7 < x.count { x[i * 7] = v }
        return (x, rng.floats(k * k * c, scale: 0.3), rng.floats(c))
    }

    func testDotPathMatchesItsTwin() {
        defer { cnx_hpath_force(-1) }
        var rng = LCG(71)
        for (h, w, c, k, y0, y1) in shapes {
            let (x, wt, bias) = inputs(&rng, h: h, w: w, c: c, k: k)
            for withBias in [true, false] {
                let b: [Float]? = withBias ? bias : nil
                var want = [Float](repeating: 7, count: h * w * c)
                cnx_dwconv_nhwc_rows_bf16_ref(x, Int64(h), Int64(w), Int64(c), Int64(k), wt, b, &want, Int64(y0), Int64(y1))
                for path in [CNX_HPATH_SCALAR, CNX_HPATH_FLOAT, CNX_HPATH_AVX512, CNX_HPATH_AVX512_BF16] {
                    cnx_hpath_force(Int32(path.rawValue))
                    guard cnx_hpath_current() == path else { continue }
                    let label = "\(String(cString: cnx_hpath_name(path))) \(h)x\(w)x\(c) k\(k) rows \(y0)..<\(y1) bias \(withBias)"
                    var got = [Float](repeating: 7, count: h * w * c)
                    let ran = cnx_dwconv_nhwc_rows_bf16(x, Int64(h), Int64(w), Int64(c), Int64(k), wt, b, &got, Int64(y0), Int64(y1))
                    if path == CNX_HPATH_AVX512_BF16 {
                        XCTAssertEqual(ran, 1, label)
                        // Bit for bit, rows outside [y0, y1) untouched (7).
                        XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), label)
                    } else {
                        XCTAssertEqual(ran, 0, label)
                        XCTAssertEqual(got, [Float](repeating: 7, count: h * w * c), label)
                    }
                }
            }
        }
    }

    /// bfloat16 by its definition: nearest of the two neighbours, ties to even; denormals as zero.
    private func bf16(_ v: Float) -> Double {
        if v.isZero || v.isSubnormal { return 0 }
        let u = v.bitPattern, lo = u & 0xFFFF_0000, hi = lo &+ 0x1_0000
        let dl = abs(Double(v) - Double(Float(bitPattern: lo))), dh = abs(Double(Float(bitPattern: hi)) - Double(v))
        if dl != dh { return Double(Float(bitPattern: dl < dh ? lo : hi)) }
        return Double(Float(bitPattern: (lo >> 16) & 1 == 0 ? lo : hi))
    }

    func testTwinIsTheConvolutionOfRoundedValues() {
        var rng = LCG(73)
        for (h, w, c, k, y0, y1) in shapes where h * w * c <= 60_000 {
            let (x, wt, bias) = inputs(&rng, h: h, w: w, c: c, k: k)
            var got = [Float](repeating: 0, count: h * w * c), float = got
            cnx_dwconv_nhwc_rows_bf16_ref(x, Int64(h), Int64(w), Int64(c), Int64(k), wt, bias, &got, Int64(y0), Int64(y1))
            cnx_dwconv_nhwc_rows_f32_ref(x, Int64(h), Int64(w), Int64(c), Int64(k), wt, bias, &float, Int64(y0), Int64(y1))
            let pad = k / 2
            var worst = 0.0, worstFloat = 0.0
            for oy in y0..<y1 {
                for ox in 0..<w {
                    for ch in 0..<c {
                        var sum = Double(bias[ch]), magnitude = abs(Double(bias[ch]))
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let iy = oy + ky - pad, ix = ox + kx - pad
                                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                let xv = x[(iy * w + ix) * c + ch], wv = wt[(ky * k + kx) * c + ch]
                                sum += bf16(xv) * bf16(wv)
                                magnitude += abs(Double(xv) * Double(wv))
                            }
                        }
                        let i = (oy * w + ox) * c + ch
                        // Float sums of up to 2 k^2 + 1 terms: within that many roundings of the magnitude.
                        worst = max(worst, abs(Double(got[i]) - sum) / (magnitude * Double(2 * k * k + 1) * 0x1p-24 + 1e-30))
                        // bfloat16 rounds x and w to 2^-9 relatively: the products within 2^-8.
                        worstFloat = max(worstFloat, abs(Double(got[i]) - Double(float[i])) / (magnitude * 0x1p-8 + 1e-30))
                    }
                }
            }
            XCTAssertLessThanOrEqual(worst, 1, "\(h)x\(w)x\(c) k\(k): the twin against Double")
            XCTAssertLessThanOrEqual(worstFloat, 1.05, "\(h)x\(w)x\(c) k\(k): the twin against float32")
        }
    }

    /// cnx_round_bf16_f32 (the input rounding of a bfloat16 depthwise where the dot kernel does
    /// not run) against bfloat16's definition and the dot path's rounding (cnx_round_bf16_ref),
    /// bit for bit: ties both ways, denormals (to zeros of their sign), the largest finite values
    /// (carrying into infinity), infinities, NaNs (quiet), in place and not.
    func testRoundingInFloatMatchesTheDotPathsRounding() {
        var rng = LCG(79)
        var x = rng.floats(4099, scale: 100)
        let special: [Float] = [
            0, -0.0, .leastNormalMagnitude, -.leastNormalMagnitude, .leastNormalMagnitude / 2, -.leastNonzeroMagnitude,
            1.00390625, 1.01171875, -2.01171875, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .infinity, -.infinity,
            .nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_1234), 65504, 1e-30, 3.3895314e38,
        ]
        for (i, v) in special.enumerated() { x[i * 11] = v }
        var bits = [UInt16](repeating: 0, count: x.count)
        cnx_round_bf16_ref(x, Int64(x.count), &bits)
        var got = [Float](repeating: 7, count: x.count)
        cnx_round_bf16_f32(x, Int64(x.count), &got)
        for i in x.indices {
            XCTAssertEqual(got[i].bitPattern, UInt32(bits[i]) << 16, "x = \(x[i]) (\(String(x[i].bitPattern, radix: 16)))")
            if x[i].isFinite && !x[i].isSubnormal && abs(x[i]) < 3.3e38 {
                XCTAssertEqual(Double(got[i]), bf16(x[i]), "x = \(x[i])")
            }
        }
        XCTAssertEqual(got[0 * 11].sign, .plus)
        XCTAssertEqual(got[5 * 11].bitPattern, 0x8000_0000, "a negative denormal becomes -0")
        XCTAssertTrue(got[13 * 11].isNaN && got[14 * 11].isNaN && got[15 * 11].isNaN)
        XCTAssertEqual(got[9 * 11], .infinity, "the largest finite float rounds up")
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer { cnx_round_bf16_f32($0.baseAddress, Int64($0.count), $0.baseAddress) }
        XCTAssertEqual(inPlace.map(\.bitPattern), got.map(\.bitPattern), "in place")
    }
}
