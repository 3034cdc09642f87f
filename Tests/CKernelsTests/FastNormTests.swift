import CKernels
import XCTest

/// The RMS norm and the simple norm (cnx_fast.h) against their definitions in Double (timm's
/// RmsNorm2d: x / sqrt(mean(x^2) + eps) * weight; SimpleNorm2d: x / sqrt(var(x) + eps) * weight,
/// var with Bessel's correction as torch.var), every path forced.
final class FastNormTests: XCTestCase {
    enum Kind: CaseIterable { case rms, simple }

    private typealias NormFunction = (
        UnsafePointer<Float>?, Int64, Int64, Float, UnsafePointer<Float>?,
        UnsafePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void

    private func function(_ kind: Kind, ref: Bool) -> NormFunction {
        switch kind {
        case .rms: return ref ? cnx_rmsnorm_rows_f32_ref : cnx_rmsnorm_rows_f32
        case .simple: return ref ? cnx_simplenorm_rows_f32_ref : cnx_simplenorm_rows_f32
        }
    }

    private func norm(
        _ kind: Kind, ref: Bool, _ x: [Float], rows: Int, c: Int, eps: Float,
        gamma: FloatBuffer?, beta: FloatBuffer?
    ) -> [Float] {
        let input = FloatBuffer(x), y = FloatBuffer(repeating: .nan, count: rows * c)
        function(kind, ref: ref)(input.const, Int64(rows), Int64(c), eps, gamma?.const, beta?.const, y.pointer)
        return y.array
    }

    /// The definition in Double; also each element's scale |x rstd gamma| + |beta|, against which
    /// its error is measured (beta may cancel the rest).
    private func exact(
        _ kind: Kind, _ x: [Float], rows: Int, c: Int, eps: Float, gamma: [Float]?,
        beta: [Float]?
    ) -> (y: [Double], scale: [Double]) {
        var y: [Double] = [], scale: [Double] = []
        for r in 0..<rows {
            let row = x[(r * c)..<((r + 1) * c)].map(Double.init)
            let stat: Double
            switch kind {
            case .rms: stat = row.map { $0 * $0 }.reduce(0, +) / Double(c)
            case .simple:
                let mean = row.reduce(0, +) / Double(c)
                stat = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c - 1)
            }
            let rstd = 1 / (stat + Double(eps)).squareRoot()
            for i in 0..<c {
                let scaled = row[i] * rstd * Double(gamma?[i] ?? 1), shift = Double(beta?[i] ?? 0)
                y.append(scaled + shift)
                scale.append(abs(scaled) + abs(shift))
            }
        }
        return (y, scale)
    }

    /// The bound of cnx_fast.h, relative to an element's scale: the float sums of the SIMD paths
    /// (at least 32 partial sums of positive terms, then the reduction) err by at most
    /// (c / 32 + 6) units of 2^-24, the root halves that, and x rstd, gamma, beta and rstd itself
    /// round once each (the simple norm: x - mean once more per term).
    private func bound(c: Int) -> Double { ((Double(c) / 32 + 8) / 2 + 4) * floatUnit }

    private static let widths = [1, 2, 3, 7, 16, 17, 40, 97, 96, 320, 768, 3072]

    func testEveryPathMatchesDouble() {
        var rng = LCG(50)
        for kind in Kind.allCases {
            for c in Self.widths where !(kind == .simple && c == 1) {
                let rows = 3
                // An offset: the RMS norm must not centre, the simple norm must centre its variance
                // and not its output.
                let x = rng.floats(rows * c, scale: 2).map { $0 + 3 }
                let gamma = rng.floats(c), beta = rng.floats(c)
                for (g, b) in [(nil, nil), (gamma, nil), (nil, beta), (gamma, beta)] as [([Float]?, [Float]?)] {
                    for eps: Float in [1e-6, 1e-5, 0.5] {
                        let label = "\(kind) c \(c) gamma \(g != nil) beta \(b != nil) eps \(eps)"
                        let (want, scale) = exact(kind, x, rows: rows, c: c, eps: eps, gamma: g, beta: b)
                        let gb = g.map(FloatBuffer.init), bb = b.map(FloatBuffer.init)
                        let check = { (got: [Float], path: String) in
                            var worst = 0.0
                            for i in 0..<want.count { worst = max(worst, abs(Double(got[i]) - want[i]) / scale[i]) }
                            XCTAssertLessThanOrEqual(worst, self.bound(c: c), "\(path) \(label)")
                        }
                        check(norm(kind, ref: true, x, rows: rows, c: c, eps: eps, gamma: gb, beta: bb), "ref")
                        forEachISA { _, path in
                            check(norm(kind, ref: false, x, rows: rows, c: c, eps: eps, gamma: gb, beta: bb), path)
                        }
                    }
                }
            }
        }
    }

    /// Every path against the reference (the reference sums in double: the paths differ by the
    /// float sums only), on odd widths, with rows far from zero mean and rows of mixed scales.
    func testEveryPathMatchesReference() {
        var rng = LCG(51)
        for kind in Kind.allCases {
            for c in [3, 17, 40, 97, 1536] {
                let rows = 4
                var x = rng.floats(rows * c)
                for i in 0..<c { x[i] = x[i] * 1e-3 + 50 }  // row 0: mean 50, spread 1e-3
                for i in 0..<c { x[c + i] *= 1e4 }  // row 1: large
                for i in 0..<c { x[2 * c + i] *= 1e-4 }  // row 2: small, eps matters
                let gamma = FloatBuffer(rng.floats(c)), beta = FloatBuffer(rng.floats(c))
                let ref = norm(kind, ref: true, x, rows: rows, c: c, eps: 1e-6, gamma: gamma, beta: beta)
                let (_, scale) = exact(kind, x, rows: rows, c: c, eps: 1e-6, gamma: gamma.array, beta: beta.array)
                forEachISA { _, path in
                    let got = norm(kind, ref: false, x, rows: rows, c: c, eps: 1e-6, gamma: gamma, beta: beta)
                    var worst = 0.0
                    for i in 0..<got.count { worst = max(worst, abs(Double(got[i]) - Double(ref[i])) / scale[i]) }
                    XCTAssertLessThanOrEqual(worst, bound(c: c), "\(path) \(kind) c \(c)")
                }
            }
        }
    }

    /// The two norms differ when the mean is not zero (the simple norm is not the RMS norm), and
    /// agree with LayerNorm's scaling where the mean is zero (up to Bessel's correction).
    func testNormsAreDistinct() {
        let c = 8
        let x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        let rms = norm(.rms, ref: false, x, rows: 1, c: c, eps: 0, gamma: nil, beta: nil)
        let simple = norm(.simple, ref: false, x, rows: 1, c: c, eps: 0, gamma: nil, beta: nil)
        // mean square 25.5, unbiased variance 6: x / 5.0498 and x / 2.4495.
        XCTAssertEqual(rms[7], Float(8 / 25.5.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(simple[7], Float(8 / 6.0.squareRoot()), accuracy: 1e-6)
        let centred: [Float] = [-3, -1, 1, 3]
        let r = norm(.rms, ref: false, centred, rows: 1, c: 4, eps: 0, gamma: nil, beta: nil)
        let s = norm(.simple, ref: false, centred, rows: 1, c: 4, eps: 0, gamma: nil, beta: nil)
        XCTAssertEqual(Double(s[3] / r[3]), (3.0 / 4).squareRoot(), accuracy: 1e-6)
    }

    /// y may be x; c == 1 gives NaN for the simple norm (torch.var of one value), x / sqrt(x^2 +
    /// eps) for the RMS norm; rows == 0 and c == 0 write nothing.
    func testInPlaceSingleChannelAndEmpty() {
        var rng = LCG(52)
        let rows = 5, c = 97
        let x = rng.floats(rows * c)
        for kind in Kind.allCases {
            let ref = norm(kind, ref: true, x, rows: rows, c: c, eps: 1e-6, gamma: nil, beta: nil)
            forEachISA { _, path in
                let buffer = FloatBuffer(x)
                function(kind, ref: false)(buffer.const, Int64(rows), Int64(c), 1e-6, nil, nil, buffer.pointer)
                XCTAssertLessThanOrEqual(relativeError(buffer.array, ref), Float(bound(c: c)), "\(path) \(kind) in place")

                let one: [Float] = [2, -0.5, 0]
                let single = norm(kind, ref: false, one, rows: 3, c: 1, eps: 1e-5, gamma: nil, beta: nil)
                for (v, y) in zip(one, single) {
                    if kind == .simple {
                        XCTAssertTrue(y.isNaN, "\(path) simple c 1")
                    } else {
                        XCTAssertEqual(
                            Double(y), Double(v) / (Double(v) * Double(v) + 1e-5).squareRoot(), accuracy: 1e-6, "\(path) rms c 1")
                    }
                }

                let untouched = FloatBuffer(repeating: 7, count: 4)
                function(kind, ref: false)(untouched.const, 0, 4, 1e-6, nil, nil, untouched.pointer)
                function(kind, ref: false)(untouched.const, 4, 0, 1e-6, nil, nil, untouched.pointer)
                XCTAssertEqual(untouched.array, [7, 7, 7, 7], "\(path) \(kind) empty")
            }
        }
    }
}
