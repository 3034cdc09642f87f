import CKernels
import XCTest

final class FastGeluTests: XCTestCase {
    private func gelu(ref: Bool, _ x: [Float]) -> [Float] {
        let buffer = FloatBuffer(x)
        (ref ? cnx_gelu_inplace_f32_ref : cnx_gelu_inplace_f32)(buffer.pointer, Int64(x.count))
        return buffer.array
    }

    /// [-10, 10] in steps of 1/1024, every path within 2e-6 of the erff-based reference, and the
    /// reference within 1e-6 (plus rounding) of GELU in Double.
    func testGeluGridMatchesErff() {
        let grid = (-10240...10240).map { Float($0) / 1024 }
        let ref = gelu(ref: true, grid)
        for (x, r) in zip(grid, ref) {
            XCTAssertEqual(Double(r), geluExact(Double(x)), accuracy: 1e-6 + 1e-6 * Double(abs(x)), "ref at \(x)")
        }
        forEachISA { _, name in
            // Odd counts exercise the masked tails.
            for count in [grid.count, 1, 7, 13, 97] {
                let got = gelu(ref: false, Array(grid.prefix(count)))
                var worst: Float = 0, at: Float = 0
                for i in 0..<count where abs(got[i] - ref[i]) > worst { (worst, at) = (abs(got[i] - ref[i]), grid[i]) }
                XCTAssertLessThanOrEqual(worst, 2e-6, "\(name) count \(count): worst at \(at)")
            }
            // The SIMD forms are closer to GELU than erff's 1 + erf(x / sqrt 2) allows: within
            // 4e-8 beyond the result's own rounding.
            if name != "scalar" {
                let got = gelu(ref: false, grid)
                for (x, g) in zip(grid, got) {
                    XCTAssertEqual(Double(g), geluExact(Double(x)), accuracy: 4e-8 + Double(g.ulp), "\(name) at \(x)")
                }
            }
        }
    }

    func testGeluExtremesAndDenormals() {
        let tiny: [Float] = [
            0, -0.0, Float.leastNonzeroMagnitude, -Float.leastNonzeroMagnitude,
            Float.leastNormalMagnitude / 1024, -Float.leastNormalMagnitude / 1024,
            Float.leastNormalMagnitude, -Float.leastNormalMagnitude, 1e-30, -1e-20,
        ]
        let large: [Float] = [11, -11, 30, -30, 1e3, -1e3, 1e10, -1e10, 3e38, -3e38, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        var rng = LCG(30)
        let random = rng.floats(1001, scale: 8)
        let x = tiny + large + random
        let ref = gelu(ref: true, x)
        forEachISA { _, name in
            let got = gelu(ref: false, x)
            for i in 0..<x.count {
                XCTAssertFalse(got[i].isNaN, "\(name) NaN at \(x[i])")
                XCTAssertEqual(got[i], ref[i], accuracy: 2e-6 + 1e-6 * abs(ref[i]), "\(name) at \(x[i])")
            }
            for (i, v) in tiny.enumerated() {
                // Within one ulp of the smallest denormal: x / 2 may round either way there.
                XCTAssertEqual(got[i], 0.5 * v, accuracy: max(1e-6 * abs(v), .leastNonzeroMagnitude), "\(name) GELU(\(v)) = x / 2")
            }
            XCTAssertTrue(gelu(ref: false, [.nan])[0].isNaN, "\(name) NaN in, NaN out")
            XCTAssertEqual(gelu(ref: false, [.infinity])[0], .infinity, name)
        }
    }
}
