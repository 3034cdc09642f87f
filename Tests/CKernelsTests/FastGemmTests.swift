import CKernels
import XCTest

final class FastGemmTests: XCTestCase {
    static let sizes = [1, 7, 13, 97]

    /// Packs b (k x n) and returns the packed panels.
    private func pack(_ b: [Float], k: Int, n: Int) -> FloatBuffer {
        let packed = FloatBuffer(repeating: .nan, count: cnx_gemm_packed_b_floats(Int64(k), Int64(n)))
        b.withUnsafeBufferPointer { cnx_gemm_pack_b($0.baseAddress, Int64(k), Int64(n), packed.pointer) }
        return packed
    }

    /// The triple loop in Double over the unpacked B: the sums before any epilogue.
    private func naiveSums(m: Int, n: Int, k: Int, a: [Float], lda: Int, b: [Float]) -> [Double] {
        var sums = [Double](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                sums.withUnsafeMutableBufferPointer { ps in
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0
                            for kk in 0..<k { s += Double(pa[i * lda + kk]) * Double(pb[kk * n + j]) }
                            ps[i * n + j] = s
                        }
                    }
                }
            }
        }
        return sums
    }

    /// The epilogue in Double: residual + act(sum + bias).
    private func epilogue(
        _ sums: [Double], m: Int, n: Int, bias: [Float]?, act: Int32, residual: [Float]?,
        ldr: Int
    ) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = sums[i * n + j]
                if let bias { s += Double(bias[j]) }
                s = activationExact(act, s)
                if let residual { s += Double(residual[i * ldr + j]) }
                c[i * n + j] = Float(s)
            }
        }
        return c
    }

    private func naive(
        m: Int, n: Int, k: Int, a: [Float], lda: Int, b: [Float], bias: [Float]?,
        act: Int32, residual: [Float]?, ldr: Int
    ) -> [Float] {
        epilogue(
            naiveSums(m: m, n: n, k: k, a: a, lda: lda, b: b), m: m, n: n, bias: bias, act: act,
            residual: residual, ldr: ldr)
    }

    /// Runs the dispatched GEMM (or the reference) into a fresh m x ldc buffer; returns the m x n
    /// part. Columns past n must come back untouched.
    private func run(
        ref: Bool, m: Int, n: Int, k: Int, a: FloatBuffer, lda: Int, packed: FloatBuffer,
        bias: FloatBuffer?, act: Int32, residual: FloatBuffer?, ldr: Int,
        ldc: Int? = nil, file: StaticString = #filePath, line: UInt = #line
    ) -> [Float] {
        let ldc = ldc ?? n
        let c = FloatBuffer(repeating: 1234.5, count: m * ldc)
        let call = ref ? cnx_gemm_f32_ref : cnx_gemm_f32
        call(
            Int64(m), Int64(n), Int64(k), a.const, Int64(lda), packed.const, bias?.const, act,
            residual?.const, Int64(ldr), c.pointer, Int64(ldc))
        if ldc == n { return c.array }
        var out: [Float] = []
        for i in 0..<m {
            for j in 0..<ldc {
                if j < n {
                    out.append(c.pointer[i * ldc + j])
                } else {
                    XCTAssertEqual(c.pointer[i * ldc + j], 1234.5, "wrote past n", file: file, line: line)
                }
            }
        }
        return out
    }

    func testPackBLayout() {
        var rng = LCG(1)
        for (k, n) in [(1, 1), (3, 33), (5, 64), (2, 97)] {
            let b = rng.floats(k * n)
            let packed = pack(b, k: k, n: n)
            let panels = (n + 31) / 32
            XCTAssertEqual(packed.count, panels * 32 * k)
            for p in 0..<panels {
                for kk in 0..<k {
                    for jj in 0..<32 {
                        let j = p * 32 + jj
                        let got = packed.pointer[(p * k + kk) * 32 + jj]
                        XCTAssertEqual(got, j < n ? b[kk * n + j] : 0, "k \(k) n \(n) at \(kk), \(j)")
                    }
                }
            }
        }
    }

    /// Every path on odd shapes, with no epilogue, bias, bias + GELU, bias + GELU + residual, bias +
    /// tanh GELU + residual and bias + SiLU, against the triple loop in Double and against the
    /// scalar reference.
    func testGemmOddShapesMatchNaiveAndReference() {
        var rng = LCG(2)
        for m in Self.sizes + [200] {
            for n in Self.sizes + [384] {
                for k in Self.sizes + [384] {
                    let a = rng.floats(m * k), b = rng.floats(k * n)
                    let bias = rng.floats(n), residual = rng.floats(m * n)
                    let sums = naiveSums(m: m, n: n, k: k, a: a, lda: k, b: b)
                    let pa = FloatBuffer(a), packed = pack(b, k: k, n: n)
                    let pbias = FloatBuffer(bias), pres = FloatBuffer(residual)
                    for (useBias, act, useResidual) in [
                        (false, 0, false), (true, 0, false), (true, 1, false), (true, 1, true), (true, 2, true), (true, 3, false),
                        (true, 4, true),
                    ] as [(Bool, Int32, Bool)] {
                        let label = "m \(m) n \(n) k \(k) bias \(useBias) act \(act) residual \(useResidual)"
                        let expected = epilogue(
                            sums, m: m, n: n, bias: useBias ? bias : nil, act: act,
                            residual: useResidual ? residual : nil, ldr: n)
                        let b = useBias ? pbias : nil, r = useResidual ? pres : nil
                        let ref = run(
                            ref: true, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: b,
                            act: act, residual: r, ldr: n)
                        // The quadratic GELU is within 1.12e-5 of the exact GELU the Double oracle
                        // applies: held to that, absolutely, against the naive sums.
                        let oracle = act == CNX_ACT_GELU_QUADRATIC ? 1e-4 : 1e-5
                        XCTAssertLessThan(relativeError(ref, expected), Float(oracle), "ref \(label)")
                        if act == CNX_ACT_GELU_QUADRATIC {
                            for (x, e) in zip(ref, expected) {
                                XCTAssertLessThanOrEqual(abs(Double(x) - Double(e)), quadraticGELUError + 1e-5 * Double(abs(e)), label)
                            }
                        }
                        forEachISA { _, name in
                            let got = run(
                                ref: false, m: m, n: n, k: k, a: pa, lda: k, packed: packed,
                                bias: b, act: act, residual: r, ldr: n)
                            XCTAssertLessThan(relativeError(got, ref), 1e-5, "\(name) \(label) vs ref")
                            XCTAssertLessThan(relativeError(got, expected), Float(oracle), "\(name) \(label) vs naive")
                        }
                    }
                }
            }
        }
    }

    /// Each epilogue alone and combined (none, bias, each activation, residual), every path vs the
    /// reference.
    func testGemmEpiloguesMatchReference() {
        var rng = LCG(3)
        // 250 and 113 rows cross row blocks (112 rows) with uneven tiles; 450 and 520 split K.
        for (m, n, k) in [(13, 97, 7), (97, 13, 97), (200, 384, 384), (7, 384, 1), (29, 65, 450), (250, 40, 30), (113, 33, 520)] {
            let pa = FloatBuffer(rng.floats(m * k)), packed = pack(rng.floats(k * n), k: k, n: n)
            let bias = FloatBuffer(rng.floats(n)), residual = FloatBuffer(rng.floats(m * n, scale: 4))
            for useBias in [false, true] {
                for act: Int32 in [0, 1, 2, 3] {
                    for useResidual in [false, true] {
                        let b = useBias ? bias : nil, r = useResidual ? residual : nil
                        let ref = run(
                            ref: true, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: b,
                            act: act, residual: r, ldr: n)
                        forEachISA { _, name in
                            let got = run(
                                ref: false, m: m, n: n, k: k, a: pa, lda: k, packed: packed,
                                bias: b, act: act, residual: r, ldr: n)
                            XCTAssertLessThan(
                                relativeError(got, ref), 1e-5,
                                "\(name) \(m)x\(n)x\(k) bias \(useBias) act \(act) residual \(useResidual)")
                        }
                    }
                }
            }
        }
    }

    /// residual == C (in place), with K long enough to be split into blocks, with and without an
    /// activation.
    func testGemmResidualInPlaceAcrossKBlocks() {
        var rng = LCG(4)
        for (m, n, k) in [(13, 97, 7), (30, 64, 384), (17, 40, 1000), (3, 96, 3072)] {
            let pa = FloatBuffer(rng.floats(m * k)), packed = pack(rng.floats(k * n), k: k, n: n)
            let bias = FloatBuffer(rng.floats(n)), start = rng.floats(m * n, scale: 3)
            for act: Int32 in [0, 1, 2, 3] {
                let separate = FloatBuffer(start)
                let ref = run(
                    ref: true, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: bias,
                    act: act, residual: separate, ldr: n)
                forEachISA { _, name in
                    let c = FloatBuffer(start)
                    cnx_gemm_f32(
                        Int64(m), Int64(n), Int64(k), pa.const, Int64(k), packed.const, bias.const,
                        act, c.const, Int64(n), c.pointer, Int64(n))
                    XCTAssertLessThan(relativeError(c.array, ref), 1e-5, "\(name) in place \(m)x\(n)x\(k) act \(act)")
                }
            }
        }
    }

    /// lda > k, ldc > n, ldr different from ldc; and a column range computed panel by panel
    /// (packed_b advanced by 32 k per panel) equals the whole.
    func testGemmLeadingDimensionsAndColumnPanels() {
        var rng = LCG(5)
        let (m, n, k) = (23, 100, 45)
        let (lda, ldr, ldc) = (k + 3, n + 5, n + 9)
        let pa = FloatBuffer(rng.floats(m * lda)), b = rng.floats(k * n), packed = pack(b, k: k, n: n)
        let bias = FloatBuffer(rng.floats(n)), residual = FloatBuffer(rng.floats(m * ldr))
        let a = pa.array
        var tight: [Float] = []
        for i in 0..<m { tight += a[(i * lda)..<(i * lda + k)] }
        let residualArray = residual.array
        let expected = naive(
            m: m, n: n, k: k, a: tight, lda: k, b: b, bias: bias.array, act: 1,
            residual: residualArray, ldr: ldr)
        forEachISA { _, name in
            let got = run(
                ref: false, m: m, n: n, k: k, a: pa, lda: lda, packed: packed, bias: bias, act: 1,
                residual: residual, ldr: ldr, ldc: ldc)
            XCTAssertLessThan(relativeError(got, expected), 1e-5, "\(name) leading dimensions")

            let whole = FloatBuffer(repeating: 0, count: m * n), pieces = FloatBuffer(repeating: 0, count: m * n)
            cnx_gemm_f32(
                Int64(m), Int64(n), Int64(k), pa.const, Int64(lda), packed.const, bias.const, 1,
                residual.const, Int64(ldr), whole.pointer, Int64(n))
            for j0 in stride(from: 0, to: n, by: 64) {
                let width = min(64, n - j0)
                cnx_gemm_f32(
                    Int64(m), Int64(width), Int64(k), pa.const, Int64(lda),
                    packed.const + (j0 / 32) * 32 * k, bias.const + j0, 1,
                    residual.const + j0, Int64(ldr), pieces.pointer + j0, Int64(n))
            }
            XCTAssertEqual(whole.array, pieces.array, "\(name) column panels")
        }
    }

    /// A's rows a multiple of 2 KB apart (lda 512, 1024, 1536) are copied with their rows spread
    /// over L1's sets before the tiles read them: the same bits as the same rows a few floats
    /// apart (read in place), and the naive sums' values; row blocks, K blocks and partial panels.
    func testGemmRowsOnFewCacheSetsMatchInPlace() {
        var rng = LCG(9)
        for (m, n, k, lda) in [(130, 70, 1024, 1024), (37, 64, 700, 1536), (20, 33, 512, 512), (15, 96, 1300, 2048)] {
            let a = rng.floats(m * lda), b = rng.floats(k * n), packed = pack(b, k: k, n: n)
            let wide = FloatBuffer(a)
            var tight: [Float] = []
            for i in 0..<m { tight += a[(i * lda)..<(i * lda + k)] + [0, 0, 0] }
            let tightBuffer = FloatBuffer(tight)
            let bias = FloatBuffer(rng.floats(n)), residual = FloatBuffer(rng.floats(m * n))
            let expected = naive(
                m: m, n: n, k: k, a: tight, lda: k + 3, b: b, bias: bias.array, act: 1, residual: residual.array, ldr: n)
            forEachISA { _, name in
                let copied = run(
                    ref: false, m: m, n: n, k: k, a: wide, lda: lda, packed: packed, bias: bias, act: 1, residual: residual, ldr: n)
                let inPlace = run(
                    ref: false, m: m, n: n, k: k, a: tightBuffer, lda: k + 3, packed: packed, bias: bias, act: 1,
                    residual: residual, ldr: n)
                XCTAssertEqual(copied, inPlace, "\(name) \(m)x\(n)x\(k), lda \(lda)")
                XCTAssertLessThan(relativeError(copied, expected), 1e-5, "\(name) \(m)x\(n)x\(k), lda \(lda)")
            }
        }
    }

    /// The activation inside the GEMM is cnx_activation_inplace_f32 on the same path, bit for bit:
    /// the GEMM with act and a residual == the plain GEMM, then the activation, then + residual.
    /// Shapes with row blocks, K blocks and partial panels; the sums scaled to reach |y| ~ 20.
    func testGemmActivationIsTheElementwiseActivation() {
        var rng = LCG(7)
        for (m, n, k) in [(13, 97, 7), (250, 40, 30), (29, 65, 450), (113, 33, 520), (1, 1, 1)] {
            let pa = FloatBuffer(rng.floats(m * k, scale: 4)), packed = pack(rng.floats(k * n, scale: 4), k: k, n: n)
            let bias = FloatBuffer(rng.floats(n, scale: 3)), residual = FloatBuffer(rng.floats(m * n))
            forEachISA { _, name in
                let linear = run(
                    ref: false, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: bias, act: 0,
                    residual: nil, ldr: n)
                for act: Int32 in [1, 2, 3] {
                    let activated = FloatBuffer(linear)
                    cnx_activation_inplace_f32(activated.pointer, Int64(m * n), act)
                    let fused = run(
                        ref: false, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: bias,
                        act: act, residual: nil, ldr: n)
                    XCTAssertTrue(qBitsEqual(fused, activated.array), "\(name) \(m)x\(n)x\(k) act \(act)")
                    let withResidual = run(
                        ref: false, m: m, n: n, k: k, a: pa, lda: k, packed: packed, bias: bias,
                        act: act, residual: residual, ldr: n)
                    let expected = (0..<(m * n)).map { activated.pointer[$0] + residual.pointer[$0] }
                    XCTAssertTrue(qBitsEqual(withResidual, expected), "\(name) \(m)x\(n)x\(k) act \(act) residual")
                }
                if m * n > 100 { XCTAssertGreaterThan(linear.map(abs).max() ?? 0, 10, "covers large |y|") }
            }
        }
    }

    /// k == 0: C = residual + act(bias).
    func testGemmZeroK() {
        let (m, n) = (5, 37)
        var rng = LCG(6)
        let bias = FloatBuffer(rng.floats(n, scale: 3)), residual = FloatBuffer(rng.floats(m * n))
        let a = FloatBuffer([]), packed = FloatBuffer([])
        var expected: [Float] = []
        for i in 0..<m {
            for j in 0..<n { expected.append(Float(geluExact(Double(bias.pointer[j]))) + residual.pointer[i * n + j]) }
        }
        let ref = run(
            ref: true, m: m, n: n, k: 0, a: a, lda: 1, packed: packed, bias: bias, act: 1,
            residual: residual, ldr: n)
        XCTAssertLessThan(relativeError(ref, expected), 2e-6)
        forEachISA { _, name in
            let got = run(
                ref: false, m: m, n: n, k: 0, a: a, lda: 1, packed: packed, bias: bias, act: 1,
                residual: residual, ldr: n)
            XCTAssertLessThan(relativeError(got, expected), 2e-6, name)
        }
    }
}
