import CReferenceKernels
import XCTest

/// The reference GEMM (BLAS's sgemm contract on the runtime's packed GEMM) against a naive
/// double-precision product: both transposes, padded leading dimensions, alpha and beta, odd
/// sizes, C not read when beta is 0, and the threaded split of a large product.
final class ReferenceGEMMTests: XCTestCase {
    func check(
        m: Int, n: Int, k: Int, ta: Bool, tb: Bool, pad: Int, alpha: Float, beta: Float, threads: Int32 = 0,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let a = (0..<(ta ? k : m) * lda).map { _ in Float.random(in: -1...1) }
        let b = (0..<(tb ? n : k) * ldb).map { _ in Float.random(in: -1...1) }
        // With beta 0, C starts as NaN: it must not be read.
        let c0 = (0..<m * ldc).map { _ in beta == 0 ? Float.nan : Float.random(in: -1...1) }
        var c = c0
        let previous = cnx_blas_threads(threads)
        cnx_sgemm(ta ? 1 : 0, tb ? 1 : 0, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, &c, Int64(ldc))
        _ = cnx_blas_threads(previous)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k {
                    acc += Double(ta ? a[p * lda + i] : a[i * lda + p]) * Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                }
                let expected = Double(alpha) * acc + (beta == 0 ? 0 : Double(beta) * Double(c0[i * ldc + j]))
                worst = max(worst, abs(expected - Double(c[i * ldc + j])))
            }
        }
        // float32 accumulation of k products of magnitude <= 1: a few ulps of sqrt(k) growth.
        XCTAssertLessThan(
            worst, 1e-6 * Double(k), "m \(m) n \(n) k \(k) ta \(ta) tb \(tb) alpha \(alpha) beta \(beta)", file: file, line: line)
    }

    func testOddSizesBothTransposes() {
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (13, 97, 31), (33, 1, 64), (5, 40, 129)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    check(m: m, n: n, k: k, ta: ta, tb: tb, pad: 0, alpha: 1, beta: 0)
                    check(m: m, n: n, k: k, ta: ta, tb: tb, pad: 3, alpha: 1, beta: 1)
                }
            }
        }
    }

    func testAlphaAndBeta() {
        for (alpha, beta) in [(Float(0.5), Float(0)), (-2, 0.25), (1, 0.5), (0, 1), (0, 0)] {
            check(m: 9, n: 35, k: 17, ta: false, tb: true, pad: 1, alpha: alpha, beta: beta)
        }
    }

    func testLargeProductSplitAcrossThreads() {
        check(m: 130, n: 70, k: 600, ta: false, tb: false, pad: 0, alpha: 1, beta: 0, threads: 2)
        check(m: 130, n: 70, k: 600, ta: true, tb: false, pad: 2, alpha: 1, beta: 1, threads: 3)
        // More threads than the GEMM keeps slices for: capped, same result.
        check(m: 2100, n: 40, k: 64, ta: false, tb: false, pad: 0, alpha: 1, beta: 0, threads: 1000)
    }

    func testThreadCountIsKept() {
        let previous = cnx_blas_threads(3)
        XCTAssertEqual(cnx_sgemm_threads_in_use(), 3)
        _ = cnx_blas_threads(500)
        XCTAssertEqual(cnx_sgemm_threads_in_use(), 64, "capped")
        _ = cnx_blas_threads(3)
        XCTAssertEqual(cnx_blas_threads(0), 3, "0 only reads")
        _ = cnx_blas_threads(previous)
        XCTAssertEqual(cnx_sgemm_threads_in_use(), previous)
    }
}
