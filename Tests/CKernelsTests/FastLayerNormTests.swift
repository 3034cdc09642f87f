import CKernels
import XCTest

final class FastLayerNormTests: XCTestCase {
    private func layerNorm(
        ref: Bool, _ x: [Float], rows: Int, c: Int, gamma: FloatBuffer?,
        beta: FloatBuffer?, eps: Float = 1e-6
    ) -> [Float] {
        let input = FloatBuffer(x), y = FloatBuffer(repeating: .nan, count: rows * c)
        let call = ref ? cnx_layernorm_rows_f32_ref : cnx_layernorm_rows_f32
        call(input.const, Int64(rows), Int64(c), eps, gamma?.const, beta?.const, y.pointer)
        return y.array
    }

    func testLayerNormMatchesReference() {
        var rng = LCG(20)
        for c in [1, 7, 13, 97, 96, 384, 768] {
            let rows = 5
            // An offset far from zero checks that the variance is taken about the mean.
            let x = rng.floats(rows * c, scale: 3).map { $0 + 50 }
            let gamma = FloatBuffer(rng.floats(c)), beta = FloatBuffer(rng.floats(c))
            for (g, b) in [(nil, nil), (gamma, nil), (nil, beta), (gamma, beta)] as [(FloatBuffer?, FloatBuffer?)] {
                let ref = layerNorm(ref: true, x, rows: rows, c: c, gamma: g, beta: b)
                forEachISA { _, name in
                    let got = layerNorm(ref: false, x, rows: rows, c: c, gamma: g, beta: b)
                    XCTAssertLessThan(relativeError(got, ref), 1e-5, "\(name) c \(c) gamma \(g != nil) beta \(b != nil)")
                }
            }
        }
    }

    func testLayerNormReferenceMatchesNaive() {
        var rng = LCG(21)
        for c in [1, 7, 97] {
            let rows = 3, eps: Float = 1e-5
            let x = rng.floats(rows * c, scale: 2), gamma = rng.floats(c), beta = rng.floats(c)
            let got = layerNorm(
                ref: true, x, rows: rows, c: c, gamma: FloatBuffer(gamma),
                beta: FloatBuffer(beta), eps: eps)
            var expected: [Float] = []
            for r in 0..<rows {
                let row = x[(r * c)..<((r + 1) * c)].map(Double.init)
                let mean = row.reduce(0, +) / Double(c)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                for i in 0..<c {
                    expected.append(Float((row[i] - mean) / (variance + Double(eps)).squareRoot() * Double(gamma[i]) + Double(beta[i])))
                }
            }
            XCTAssertLessThan(relativeError(got, expected), 1e-6, "c \(c)")
        }
    }

    func testLayerNormInPlace() {
        var rng = LCG(22)
        let rows = 4, c = 97
        let x = rng.floats(rows * c)
        let ref = layerNorm(ref: true, x, rows: rows, c: c, gamma: nil, beta: nil)
        forEachISA { _, name in
            let buffer = FloatBuffer(x)
            cnx_layernorm_rows_f32(buffer.const, Int64(rows), Int64(c), 1e-6, nil, nil, buffer.pointer)
            XCTAssertLessThan(relativeError(buffer.array, ref), 1e-5, name)
        }
    }
}
