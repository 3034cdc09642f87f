import CKernels
import XCTest

/// The int8 kernels (cnx_qgemm.h): every path this CPU supports, forced in turn, against the
/// scalar reference and a Swift triple loop. The s32 GEMM, and the epilogues without an activation
/// or with the quadratic GELU, must be bit-identical; with another (exact GELU, tanh GELU, SiLU)
/// float outputs agree within 1e-6 (relative to the largest output) and u8 outputs within 1.
final class QGemmTests: XCTestCase {
    static let ms = [1, 7, 13, 97, 200]
    static let ns = [1, 7, 13, 97, 384]
    static let ks = [1, 3, 7, 13, 97, 384]
    /// ConvNeXt-T's pointwise layers (k, n): both layers of each stage.
    static let convnextKN = [
        (96, 384), (384, 96), (192, 768), (768, 192), (384, 1536), (1536, 384),
        (768, 3072), (3072, 768),
    ]

    /// The epilogue's parameters (cnx_qgemm.h), NULL where a buffer is nil.
    struct Epilogue {
        var colsum: UnsafePointer<Int32>?
        var aZero: Int32 = 0
        var aScale: Float = 1
        var wScale: QBuffer<Float>?
        var bias: QBuffer<Float>?
        var act: Int32 = 0
        var oScale: Float = 1
        var oZero: Int32 = 0
    }

    enum Kernel { case reference, dispatched }

    // MARK: - Runners: fresh output buffers of ldo columns; columns past n must stay untouched

    private func gemmS32(
        _ kind: Kernel, m: Int, n: Int, k: Int, a: QBuffer<UInt8>, lda: Int,
        w: PackedWeights, ldc: Int? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) -> [Int32] {
        let call = kind == .reference ? cnx_qgemm_u8s8_s32_ref : cnx_qgemm_u8s8_s32
        return written(m: m, n: n, ld: ldc ?? n, sentinel: 0x5A5A_5A5A, file: file, line: line) { c, ldc in
            call(Int64(m), Int64(n), Int64(k), a.const, Int64(lda), w.pointer, c, Int64(ldc))
        }
    }

    private func fusedF32(
        _ kind: Kernel, m: Int, n: Int, k: Int, a: QBuffer<UInt8>, lda: Int,
        w: PackedWeights, _ e: Epilogue, residual: QBuffer<Float>? = nil,
        ldo: Int? = nil, file: StaticString = #filePath, line: UInt = #line
    ) -> [Float] {
        let call = kind == .reference ? cnx_qgemm_fused_f32_ref : cnx_qgemm_fused_f32
        return written(m: m, n: n, ld: ldo ?? n, sentinel: 1234.5, file: file, line: line) { out, ldo in
            call(
                Int64(m), Int64(n), Int64(k), a.const, Int64(lda), w.pointer, e.colsum, e.aZero, e.aScale,
                e.wScale?.const, e.bias?.const, e.act, residual?.const, Int64(n), out, Int64(ldo))
        }
    }

    private func fusedU8(
        _ kind: Kernel, m: Int, n: Int, k: Int, a: QBuffer<UInt8>, lda: Int,
        w: PackedWeights, _ e: Epilogue, ldo: Int? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) -> [UInt8] {
        let call = kind == .reference ? cnx_qgemm_fused_u8_ref : cnx_qgemm_fused_u8
        return written(m: m, n: n, ld: ldo ?? n, sentinel: 0xA5, file: file, line: line) { out, ldo in
            call(
                Int64(m), Int64(n), Int64(k), a.const, Int64(lda), w.pointer, e.colsum, e.aZero, e.aScale,
                e.wScale?.const, e.bias?.const, e.act, e.oScale, e.oZero, out, Int64(ldo))
        }
    }

    private func epilogueF32(
        _ kind: Kernel, m: Int, n: Int, acc: QBuffer<Int32>, _ e: Epilogue,
        residual: QBuffer<Float>? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) -> [Float] {
        let call = kind == .reference ? cnx_qgemm_epilogue_f32_ref : cnx_qgemm_epilogue_f32
        return written(m: m, n: n, ld: n + 3, sentinel: 1234.5, file: file, line: line) { out, ldo in
            call(
                Int64(m), Int64(n), acc.const, Int64(n), e.colsum, e.aZero, e.aScale, e.wScale?.const,
                e.bias?.const, e.act, residual?.const, Int64(n), out, Int64(ldo))
        }
    }

    private func epilogueU8(
        _ kind: Kernel, m: Int, n: Int, acc: QBuffer<Int32>, _ e: Epilogue,
        file: StaticString = #filePath, line: UInt = #line
    ) -> [UInt8] {
        let call = kind == .reference ? cnx_qgemm_epilogue_u8_ref : cnx_qgemm_epilogue_u8
        return written(m: m, n: n, ld: n + 5, sentinel: 0xA5, file: file, line: line) { out, ldo in
            call(
                Int64(m), Int64(n), acc.const, Int64(n), e.colsum, e.aZero, e.aScale, e.wScale?.const,
                e.bias?.const, e.act, e.oScale, e.oZero, out, Int64(ldo))
        }
    }

    /// Calls `kernel` on a fresh m x ld output buffer (and ld) filled with `sentinel`; returns the
    /// m x n part and asserts the rest still holds the sentinel.
    private func written<T: Equatable>(
        m: Int, n: Int, ld: Int, sentinel: T, file: StaticString, line: UInt,
        _ kernel: (UnsafeMutablePointer<T>, Int) -> Void
    ) -> [T] {
        let buffer = QBuffer<T>(repeating: sentinel, count: max(m * ld, 1))
        kernel(buffer.pointer, ld)
        let all = buffer.array
        var out: [T] = []
        out.reserveCapacity(m * n)
        var clobbered = 0
        for i in 0..<m {
            out += all[(i * ld)..<(i * ld + n)]
            for j in n..<ld where all[i * ld + j] != sentinel { clobbered += 1 }
        }
        XCTAssertEqual(clobbered, 0, "wrote past n", file: file, line: line)
        return out
    }

    /// Realistic epilogue parameters for this GEMM: per-column weight scales that put y in about
    /// [-4.5, 4.5], and an output scale that spans [0, 255] from a zero point of 20.
    private func parameters(
        _ rng: inout QRandom, acc: [Int32], m: Int, n: Int, w: PackedWeights,
        act: Int32, bias: Bool = true, colsum: Bool = true, wScale: Bool = true
    ) -> Epilogue {
        var e = Epilogue()
        e.aZero = Int32(rng.next32() % 256)
        e.aScale = 0.02
        e.colsum = colsum ? w.colSums : nil
        if wScale {
            var maxAbs = [Float](repeating: 1, count: n)
            for i in 0..<m {
                for j in 0..<n {
                    let centred = Float(acc[i * n + j]) - (colsum ? Float(e.aZero) * Float(w.colSums[j]) : 0)
                    maxAbs[j] = max(maxAbs[j], abs(centred))
                }
            }
            e.wScale = QBuffer((0..<n).map { rng.float(0.5, 1.5) * 3 / (e.aScale * maxAbs[$0]) })
        }
        e.bias = bias ? QBuffer(rng.floats(n, -1.5, 1.5)) : nil
        e.act = act
        e.oScale = 4.7 / 235
        e.oZero = 20
        return e
    }

    // MARK: - Dispatch and packing

    func testPathNamesForcingAndEnvironment() {
        defer { cnx_qisa_force(-1) }
        assertPathNames(
            [
                CNX_QISA_SCALAR: "scalar", CNX_QISA_AVX2: "avx2", CNX_QISA_AVX_VNNI: "avxvnni", CNX_QISA_AVX512_VNNI: "avx512vnni",
                CNX_QISA_NEON: "neon", CNX_QISA_DOTPROD: "dotprod", CNX_QISA_I8MM: "i8mm", cnx_qisa(rawValue: 9): "unknown",
            ], cnx_qisa_name)
        XCTAssertEqual(CNX_QISA_SCALAR.rawValue, 0)
        XCTAssertEqual(CNX_QISA_AVX512_VNNI.rawValue, 3)

        let paths = supportedQISAs()
        XCTAssertEqual(paths.first, CNX_QISA_SCALAR)
        XCTAssertEqual(cnx_qisa_supported(cnx_qisa(rawValue: 9)), 0)
        cnx_qisa_force(99)  // the best supported path
        let best = cnx_qisa_current()
        XCTAssertEqual(best, paths.last)
        for isa in [
            CNX_QISA_SCALAR, CNX_QISA_AVX2, CNX_QISA_AVX_VNNI, CNX_QISA_AVX512_VNNI, CNX_QISA_NEON, CNX_QISA_DOTPROD, CNX_QISA_I8MM,
        ] {
            cnx_qisa_force(Int32(isa.rawValue))
            let got = cnx_qisa_current()
            // The best supported path at or below the request.
            XCTAssertEqual(got, paths.last { $0.rawValue <= isa.rawValue }, "force \(isa.rawValue)")
        }

        // CNX_ISA, the one variable for every kernel family (cnx_cpu.h), lowers the int8 path.
        let saved = getenv("CNX_ISA").map { String(cString: $0) }
        defer {
            if let saved { setenv("CNX_ISA", saved, 1) } else { unsetenv("CNX_ISA") }
            cnx_qisa_force(-1)
        }
        unsetenv("CNX_ISA")
        XCTAssertEqual(cnx_qisa_detect(), best)
        setenv("CNX_ISA", "scalar", 1)
        XCTAssertEqual(cnx_qisa_detect(), CNX_QISA_SCALAR)
        cnx_qisa_force(-1)
        XCTAssertEqual(cnx_qisa_current(), CNX_QISA_SCALAR)
        setenv("CNX_ISA", "avx2", 1)  // AVX2 without any VNNI
        XCTAssertEqual(cnx_qisa_detect(), paths.last { $0.rawValue <= CNX_QISA_AVX2.rawValue })
        setenv("CNX_ISA", "avxvnni", 1)
        XCTAssertEqual(cnx_qisa_detect(), paths.last { $0.rawValue <= CNX_QISA_AVX_VNNI.rawValue })
        for level in ["avx512", "avx512vnni", "no-such-level"] {
            setenv("CNX_ISA", level, 1)
            XCTAssertEqual(cnx_qisa_detect(), best, level)
        }
        // The former int8-only variable is gone: it lowers nothing.
        unsetenv("CNX_ISA")
        setenv("CNX_QISA", "scalar", 1)
        defer { unsetenv("CNX_QISA") }
        XCTAssertEqual(cnx_qisa_detect(), best)
    }

    func testPackedLayoutAndColumnSums() {
        var rng = QRandom(1)
        for (k, n) in [(1, 1), (3, 17), (4, 16), (5, 33), (13, 7), (97, 40)] {
            let b = rng.s8(k * n)
            let w = PackedWeights(b, k: k, n: n)
            let panels = (n + 15) / 16, groups = (k + 3) / 4
            XCTAssertEqual(w.bytes, panels * groups * 64 + panels * 16 * 4, "k \(k) n \(n)")
            XCTAssertEqual(w.bytes % 64, 0)
            let bytes = w.pointer.assumingMemoryBound(to: Int8.self)
            for p in 0..<panels {
                for g in 0..<groups {
                    for jj in 0..<16 {
                        for t in 0..<4 {
                            let (kk, j) = (4 * g + t, 16 * p + jj)
                            let expected: Int8 = kk < k && j < n ? b[kk * n + j] : 0
                            XCTAssertEqual(bytes[(p * groups + g) * 64 + jj * 4 + t], expected, "k \(k) n \(n) at \(kk), \(j)")
                        }
                    }
                }
            }
            var sums = [Int32](repeating: 0, count: n)
            for kk in 0..<k { for j in 0..<n { sums[j] += Int32(b[kk * n + j]) } }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: w.colSums, count: n)), sums)
            XCTAssertEqual(
                Array(UnsafeBufferPointer(start: w.colSums + n, count: panels * 16 - n)),
                [Int32](repeating: 0, count: panels * 16 - n), "padding of the column sums")
            var direct = [Int32](repeating: -1, count: n)
            cnx_qgemm_col_sums(b, Int64(k), Int64(n), &direct)
            XCTAssertEqual(direct, sums)
        }
        XCTAssertEqual(cnx_qgemm_packed_b_bytes(5, 0), 0)
        XCTAssertEqual(cnx_qgemm_packed_b_bytes(0, 5), 64)  // column sums only
    }

    // MARK: - GEMM: bit-identical

    /// Odd shapes, full-range bytes: every path == the reference == the Swift triple loop.
    func testGemmOddShapesBitIdenticalToReferenceAndNaive() {
        var rng = QRandom(2)
        for m in Self.ms {
            for n in Self.ns {
                for k in Self.ks {
                    let a = rng.u8(m * k), b = rng.s8(k * n)
                    let expected = naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b)
                    let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
                    let ref = gemmS32(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w)
                    XCTAssertEqual(ref, expected, "ref m \(m) n \(n) k \(k)")
                    forEachQISA { _, name in
                        let got = gemmS32(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w)
                        XCTAssertEqual(got, ref, "\(name) m \(m) n \(n) k \(k)")
                    }
                }
            }
        }
    }

    /// ConvNeXt-T's pointwise shapes (one 7x7 image = 49 rows, and a stage-1 row tile of 200).
    func testGemmConvNeXtShapesBitIdentical() {
        var rng = QRandom(3)
        for (k, n) in Self.convnextKN {
            let m = k * n > 400_000 ? 49 : 200
            let pa = QBuffer(rng.u8(m * k)), w = PackedWeights(rng.s8(k * n), k: k, n: n)
            let ref = gemmS32(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w)
            forEachQISA { _, name in
                XCTAssertEqual(gemmS32(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w), ref, "\(name) m \(m) k \(k) n \(n)")
            }
        }
    }

    /// The extremes: 255 x -128 and 255 x 127 over long K; past k = 65793 the int32 sums wrap, and
    /// every path wraps the same way.
    func testGemmExtremeValuesAndWrapping() {
        for (k, aValue, bValue) in [(3072, UInt8(255), Int8(-128)), (3071, 255, 127), (70001, 255, -128), (70003, 255, 127)] {
            let (m, n) = (3, 19)
            let a = [UInt8](repeating: aValue, count: m * k), b = [Int8](repeating: bValue, count: k * n)
            let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
            let exact = Int64(k) * Int64(aValue) * Int64(bValue)
            let wrapped = Int32(truncatingIfNeeded: exact)
            let ref = gemmS32(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w)
            XCTAssertEqual(ref, [Int32](repeating: wrapped, count: m * n), "ref k \(k)")
            forEachQISA { _, name in
                XCTAssertEqual(gemmS32(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w), ref, "\(name) k \(k)")
            }
        }
    }

    /// lda > k and ldc > n; A rows end exactly at the end of their allocation (the k tail is
    /// never over-read: run under ASan to check); a column range computed from a panel offset
    /// equals the whole; m == 0 and n == 0 write nothing; k == 0 gives zeros.
    func testGemmLeadingDimensionsTailsAndEmpty() {
        var rng = QRandom(4)
        let (m, n, k, lda, ldc) = (23, 45, 38, 41, 50)
        let a = rng.u8(m * lda), b = rng.s8(k * n)
        var tight: [UInt8] = []
        for i in 0..<m { tight += a[(i * lda)..<(i * lda + k)] }
        let expected = naiveGemmS32(m: m, n: n, k: k, a: tight, lda: k, b: b)
        let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
        XCTAssertEqual(gemmS32(.reference, m: m, n: n, k: k, a: pa, lda: lda, w: w, ldc: ldc), expected)
        forEachQISA { _, name in
            XCTAssertEqual(gemmS32(.dispatched, m: m, n: n, k: k, a: pa, lda: lda, w: w, ldc: ldc), expected, name)

            // One row per allocation, exactly k bytes long, for each k % 4.
            for kk in [1, 2, 3, 5, 6, 7] {
                let row = QBuffer(rng.u8(kk)), wk = PackedWeights(rng.s8(kk * 20), k: kk, n: 20)
                XCTAssertEqual(
                    gemmS32(.dispatched, m: 1, n: 20, k: kk, a: row, lda: kk, w: wk),
                    naiveGemmS32(m: 1, n: 20, k: kk, a: row.array, lda: kk, b: wk.b), "\(name) k \(kk)")
            }

            // Columns 32..44 alone: packed_b advanced by two panels.
            let groups = (k + 3) / 4
            let c = QBuffer<Int32>(repeating: 0, count: m * n)
            cnx_qgemm_u8s8_s32(
                Int64(m), Int64(n - 32), Int64(k), pa.const, Int64(lda), w.pointer + 2 * groups * 64,
                c.pointer + 32, Int64(n))
            for i in 0..<m {
                XCTAssertEqual(
                    Array(c.array[(i * n + 32)..<(i * n + n)]), Array(expected[(i * n + 32)..<(i * n + n)]), "\(name) panel offset")
                XCTAssertEqual(Array(c.array[(i * n)..<(i * n + 32)]), [Int32](repeating: 0, count: 32), "\(name) panel offset")
            }

            let untouched = QBuffer<Int32>(repeating: 7, count: 8)
            cnx_qgemm_u8s8_s32(0, 8, Int64(k), pa.const, Int64(lda), w.pointer, untouched.pointer, 8)
            cnx_qgemm_u8s8_s32(1, 0, Int64(k), pa.const, Int64(lda), w.pointer, untouched.pointer, 8)
            XCTAssertEqual(untouched.array, [Int32](repeating: 7, count: 8), "\(name) empty")

            let w0 = PackedWeights([], k: 0, n: 21)
            XCTAssertEqual(
                gemmS32(.dispatched, m: 5, n: 21, k: 0, a: pa, lda: 1, w: w0), [Int32](repeating: 0, count: 5 * 21), "\(name) k 0")
        }
    }

    // MARK: - Epilogues

    /// The epilogue alone, from an accumulator buffer: every flag combination and activation;
    /// without one bit-identical, with one within the stated tolerance. The reference also against
    /// Double.
    func testEpiloguesMatchReference() {
        var rng = QRandom(5)
        for (m, n, k) in [(13, 97, 384), (7, 13, 7), (97, 384, 97), (1, 1, 1), (29, 33, 1536)] {
            let a = rng.u8(m * k), b = rng.s8(k * n)
            let w = PackedWeights(b, k: k, n: n)
            let accValues = naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b)
            let acc = QBuffer(accValues)
            let residual = QBuffer(rng.floats(m * n, -3, 3))
            for act: Int32 in [0, 1, 2, 3, CNX_ACT_GELU_QUADRATIC] {
                // No activation and the quadratic GELU (one specification, one order of float
                // operations): the same bits on every path.
                let bitExact = act == 0 || act == CNX_ACT_GELU_QUADRATIC
                for (useBias, useColsum, useScale) in [(true, true, true), (false, true, true), (true, false, true), (true, true, false)] {
                    let e = parameters(
                        &rng, acc: accValues, m: m, n: n, w: w, act: act, bias: useBias,
                        colsum: useColsum, wScale: useScale)
                    let label = "\(m)x\(n)x\(k) act \(act) bias \(useBias) colsum \(useColsum) scale \(useScale)"
                    for res in [nil, residual] {
                        let ref = epilogueF32(.reference, m: m, n: n, acc: acc, e, residual: res)
                        // The specification in Double.
                        var exact = [Float](repeating: 0, count: m * n)
                        for i in 0..<m {
                            for j in 0..<n {
                                let centred = Double(accValues[i * n + j]) - Double(e.aZero) * Double(e.colsum?[j] ?? 0)
                                var y = centred * Double(e.aScale) * Double(e.wScale?.pointer[j] ?? 1) + Double(e.bias?.pointer[j] ?? 0)
                                y = activationExact(act, y)
                                exact[i * n + j] = Float(y + Double(res?.pointer[i * n + j] ?? 0))
                            }
                        }
                        if act == CNX_ACT_GELU_QUADRATIC {
                            let scale = exact.map { Double(abs($0)) }.max() ?? 0
                            for (r, x) in zip(ref, exact) {
                                XCTAssertLessThanOrEqual(
                                    abs(Double(r) - Double(x)), quadraticGELUError + 1e-6 * scale, "ref vs Double \(label)")
                            }
                        } else {
                            XCTAssertLessThan(qRelativeError(ref, exact), 2e-6, "ref vs Double \(label)")
                        }
                        forEachQISA { _, name in
                            let got = epilogueF32(.dispatched, m: m, n: n, acc: acc, e, residual: res)
                            if bitExact {
                                XCTAssertTrue(qBitsEqual(got, ref), "\(name) f32 \(label) residual \(res != nil)")
                            } else {
                                XCTAssertLessThanOrEqual(qRelativeError(got, ref), 1e-6, "\(name) f32 \(label) residual \(res != nil)")
                            }
                        }
                    }
                    let refU8 = epilogueU8(.reference, m: m, n: n, acc: acc, e)
                    forEachQISA { _, name in
                        let got = epilogueU8(.dispatched, m: m, n: n, acc: acc, e)
                        if bitExact {
                            XCTAssertEqual(got, refU8, "\(name) u8 \(label)")
                        } else {
                            XCTAssertLessThanOrEqual(qMaxByteDifference(got, refU8), 1, "\(name) u8 \(label)")
                        }
                    }
                    if useScale && useColsum && m * n > 100 {
                        // The outputs span the u8 range, so the test exercises rounding, not only clamps.
                        XCTAssertTrue(refU8.contains { $0 < 25 } && refU8.contains { $0 > 100 }, label)
                    }
                }
            }
        }
    }

    /// The activation inside the epilogues is the float kernels' (cnx_activation_inplace_f32 on the
    /// matching float path), bit for bit, for every activation, so int8 and float layers agree.
    func testEpilogueActivationIsTheFloatKernelsActivation() {
        var rng = QRandom(11)
        let (m, n, k) = (37, 45, 200)
        let a = rng.u8(m * k), b = rng.s8(k * n)
        let w = PackedWeights(b, k: k, n: n)
        let accValues = naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b)
        let acc = QBuffer(accValues)
        var e = parameters(&rng, acc: accValues, m: m, n: n, w: w, act: 0)
        e.wScale = QBuffer(e.wScale!.array.map { $0 * 2.5 })  // y in about [-11, 11]: every GELU interval
        defer { cnx_isa_force(-1) }
        let floatPath: [cnx_qisa: cnx_isa] = [
            CNX_QISA_SCALAR: CNX_ISA_SCALAR, CNX_QISA_AVX2: CNX_ISA_AVX2,
            CNX_QISA_AVX_VNNI: CNX_ISA_AVX2, CNX_QISA_AVX512_VNNI: CNX_ISA_AVX512,
        ]
        forEachQISA { isa, name in
            guard let path = floatPath[isa] else { return XCTFail("no float path for \(name)") }
            cnx_isa_force(Int32(path.rawValue))
            guard cnx_isa_current() == path else { return }  // that float path is missing here
            e.act = 0
            let linear = epilogueF32(.dispatched, m: m, n: n, acc: acc, e)
            XCTAssertGreaterThan(linear.map(abs).max() ?? 0, 6, "covers |y| > 6")
            for act: Int32 in [1, 2, 3, CNX_ACT_GELU_QUADRATIC] {
                e.act = act
                let fused = epilogueF32(.dispatched, m: m, n: n, acc: acc, e)
                var separate = linear
                cnx_activation_inplace_f32(&separate, Int64(separate.count), act)
                XCTAssertTrue(
                    qBitsEqual(fused, separate),
                    "\(name) act \(act) vs cnx_activation_inplace_f32 on \(String(cString: cnx_isa_name(path)))")
            }
        }
    }

    /// The residual may be the output itself.
    func testEpilogueAndFusedResidualInPlace() {
        var rng = QRandom(6)
        let (m, n, k) = (17, 70, 130)
        let a = rng.u8(m * k), b = rng.s8(k * n)
        let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
        let accValues = naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b)
        let acc = QBuffer(accValues)
        let start = rng.floats(m * n, -2, 2)
        for act: Int32 in [0, 1, 2, 3] {
            let e = parameters(&rng, acc: accValues, m: m, n: n, w: w, act: act)
            let ref = epilogueF32(.reference, m: m, n: n, acc: acc, e, residual: QBuffer(start))
            forEachQISA { _, name in
                let io = QBuffer(start)
                cnx_qgemm_epilogue_f32(
                    Int64(m), Int64(n), acc.const, Int64(n), e.colsum, e.aZero, e.aScale,
                    e.wScale?.const, e.bias?.const, act, io.const, Int64(n), io.pointer, Int64(n))
                let fused = QBuffer(start)
                cnx_qgemm_fused_f32(
                    Int64(m), Int64(n), Int64(k), pa.const, Int64(k), w.pointer, e.colsum, e.aZero,
                    e.aScale, e.wScale?.const, e.bias?.const, act, fused.const, Int64(n), fused.pointer, Int64(n))
                if act == 0 {
                    XCTAssertTrue(qBitsEqual(io.array, ref), "\(name) epilogue in place")
                    XCTAssertTrue(qBitsEqual(fused.array, ref), "\(name) fused in place")
                } else {
                    XCTAssertLessThanOrEqual(qRelativeError(io.array, ref), 1e-6, "\(name) epilogue in place")
                    XCTAssertLessThanOrEqual(qRelativeError(fused.array, ref), 1e-6, "\(name) fused in place")
                }
            }
        }
    }

    /// Requantization rounds half to even: y = acc exactly (unit scales) and o_scale = 2, so every
    /// odd acc lands on a .5; plus the clamps at 0 and 255.
    func testEpilogueU8RoundsHalfToEven() {
        let (m, n) = (3, 37)
        var values: [Int32] = []
        for i in 0..<(m * n) { values.append(Int32(i * 7 % 601) - 90) }  // -90 ... 510
        let acc = QBuffer(values)
        var e = Epilogue()
        e.aScale = 1
        e.oScale = 2
        e.oZero = 3
        let expected: [UInt8] = values.map { v in
            let half = Double(v) / 2
            var r = half.rounded(.toNearestOrEven) + 3
            r = min(max(r, 0), 255)
            return UInt8(r)
        }
        XCTAssertEqual(epilogueU8(.reference, m: m, n: n, acc: acc, e), expected)
        forEachQISA { _, name in
            XCTAssertEqual(epilogueU8(.dispatched, m: m, n: n, acc: acc, e), expected, name)
        }
    }

    // MARK: - Fused GEMM + epilogue

    /// Fused == GEMM then epilogue, on every path (the same vector code: bit-identical even with an
    /// activation), and == the fused reference (bit-identical without an activation, within
    /// tolerance with one).
    func testFusedOddShapesMatchPiecesAndReference() {
        var rng = QRandom(7)
        var shape = 0
        for m in [1, 7, 13, 97] {
            for n in [1, 7, 13, 97, 384] {
                for k in [1, 3, 13, 97, 384] {
                    let a = rng.u8(m * k), b = rng.s8(k * n)
                    let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
                    let accValues = naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b)
                    let acc = QBuffer(accValues)
                    let residual = QBuffer(rng.floats(m * n, -3, 3))
                    shape += 1
                    for act: Int32 in [0, 1 + Int32(shape % 3)] {  // each activation on a third of the shapes
                        let e = parameters(&rng, acc: accValues, m: m, n: n, w: w, act: act)
                        let label = "m \(m) n \(n) k \(k) act \(act)"
                        let refF = fusedF32(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w, e, residual: residual)
                        let refU = fusedU8(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w, e)
                        XCTAssertTrue(
                            qBitsEqual(refF, epilogueF32(.reference, m: m, n: n, acc: acc, e, residual: residual)), "ref pieces \(label)")
                        XCTAssertEqual(refU, epilogueU8(.reference, m: m, n: n, acc: acc, e), "ref pieces \(label)")
                        forEachQISA { _, name in
                            let gotF = fusedF32(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w, e, residual: residual)
                            let gotU = fusedU8(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w, e)
                            XCTAssertTrue(
                                qBitsEqual(gotF, epilogueF32(.dispatched, m: m, n: n, acc: acc, e, residual: residual)),
                                "\(name) f32 pieces \(label)")
                            XCTAssertEqual(gotU, epilogueU8(.dispatched, m: m, n: n, acc: acc, e), "\(name) u8 pieces \(label)")
                            if act == 0 {
                                XCTAssertTrue(qBitsEqual(gotF, refF), "\(name) f32 \(label)")
                                XCTAssertEqual(gotU, refU, "\(name) u8 \(label)")
                            } else {
                                XCTAssertLessThanOrEqual(qRelativeError(gotF, refF), 1e-6, "\(name) f32 \(label)")
                                XCTAssertLessThanOrEqual(qMaxByteDifference(gotU, refU), 1, "\(name) u8 \(label)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The fused kernels on ConvNeXt-T's shapes (pw1: an activation then u8; pw2: float with residual),
    /// with lda > k and ldo > n.
    func testFusedConvNeXtShapesAndLeadingDimensions() {
        var rng = QRandom(8)
        for (index, (k, n)) in Self.convnextKN.enumerated() {
            let m = k * n > 400_000 ? 49 : 196
            let lda = k + 8, ldo = n + 16
            let a = rng.u8(m * lda), b = rng.s8(k * n)
            var tight: [UInt8] = []
            for i in 0..<m { tight += a[(i * lda)..<(i * lda + k)] }
            let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
            let accValues = naiveGemmS32(m: m, n: n, k: k, a: tight, lda: k, b: b)
            let residual = QBuffer(rng.floats(m * n, -3, 3))
            let act: Int32 = index % 2 == 0 ? [1, 2, 3][index / 2 % 3] : 0  // pw1 has the activation, pw2 not
            let e = parameters(&rng, acc: accValues, m: m, n: n, w: w, act: act)
            let refU = fusedU8(.reference, m: m, n: n, k: k, a: pa, lda: lda, w: w, e, ldo: ldo)
            let refF = fusedF32(.reference, m: m, n: n, k: k, a: pa, lda: lda, w: w, e, residual: residual, ldo: ldo)
            forEachQISA { _, name in
                let label = "\(name) m \(m) k \(k) n \(n) act \(act)"
                let gotU = fusedU8(.dispatched, m: m, n: n, k: k, a: pa, lda: lda, w: w, e, ldo: ldo)
                let gotF = fusedF32(.dispatched, m: m, n: n, k: k, a: pa, lda: lda, w: w, e, residual: residual, ldo: ldo)
                if act == 0 {
                    XCTAssertEqual(gotU, refU, label)
                    XCTAssertTrue(qBitsEqual(gotF, refF), label)
                } else {
                    XCTAssertLessThanOrEqual(qMaxByteDifference(gotU, refU), 1, label)
                    XCTAssertLessThanOrEqual(qRelativeError(gotF, refF), 1e-6, label)
                }
            }
        }
    }

    // MARK: - Quantization

    /// Exact .5 quotients round to even; clamps; NaN -> 0; infinities; every path on odd counts
    /// equals the reference bit for bit.
    func testQuantizeU8RoundsHalfToEvenAndClamps() {
        // x / 0.5 = x * 2 exactly: x = (v + 0.5) / 2 gives v + 0.5.
        let halves: [Float] = (-8...300).map { (Float($0) + 0.5) / 2 }
        let specials: [Float] = [0, -0.0, .nan, .infinity, -.infinity, 1e30, -1e30, 0.24999999, 0.25, 0.75, 1.25]
        let x = halves + specials
        func expected(_ v: Float, zero: Int32) -> UInt8 {
            if v.isNaN { return 0 }
            let r = (Double(v) * 2).rounded(.toNearestOrEven) + Double(zero)
            return UInt8(min(max(r, 0), 255))
        }
        for zero: Int32 in [0, 3, 128, 255] {
            let want = x.map { expected($0, zero: zero) }
            var ref = [UInt8](repeating: 0xA5, count: x.count)
            cnx_quantize_u8_ref(x, Int64(x.count), 0.5, zero, &ref)
            XCTAssertEqual(ref, want, "ref zero \(zero)")
            forEachQISA { _, name in
                var got = [UInt8](repeating: 0xA5, count: x.count)
                cnx_quantize_u8(x, Int64(x.count), 0.5, zero, &got)
                XCTAssertEqual(got, want, "\(name) zero \(zero)")
            }
        }
        // A zero point outside [0, 255] is clamped first, the same in the reference quantizer
        // (cnx_qref.h), its twin cnx_quantize_u8_ref and every path of cnx_quantize_u8.
        for (zero, clamped): (Int32, Int32) in [(-7, 0), (-1000, 0), (256, 255), (300, 255)] {
            let want = x.map { expected($0, zero: clamped) }
            var reference = [UInt8](repeating: 0xA5, count: x.count), twin = reference
            cnx_quantize_u8_reference(x, Int64(x.count), 0.5, zero, &reference)
            cnx_quantize_u8_ref(x, Int64(x.count), 0.5, zero, &twin)
            XCTAssertEqual(reference, want, "reference zero \(zero)")
            XCTAssertEqual(twin, want, "ref zero \(zero)")
            forEachQISA { _, name in
                var got = [UInt8](repeating: 0xA5, count: x.count)
                cnx_quantize_u8(x, Int64(x.count), 0.5, zero, &got)
                XCTAssertEqual(got, want, "\(name) zero \(zero)")
            }
        }
        XCTAssertEqual(expected(1.25, zero: 0), 2)  // 2.5 -> 2
        XCTAssertEqual(expected(1.75, zero: 0), 4)  // 3.5 -> 4

        var rng = QRandom(9)
        for count in [1, 7, 13, 97, 1000, 1031] {
            let values = rng.floats(count, -6, 6)
            for (scale, zero) in [(Float(0.05), Int32(117)), (Float(1) / 3, Int32(0)), (Float(0.013), Int32(255))] {
                var ref = [UInt8](repeating: 0, count: count)
                cnx_quantize_u8_ref(values, Int64(count), scale, zero, &ref)
                forEachQISA { _, name in
                    // Bytes past count must stay untouched.
                    var got = [UInt8](repeating: 0xA5, count: count + 9)
                    cnx_quantize_u8(values, Int64(count), scale, zero, &got)
                    XCTAssertEqual(Array(got[..<count]), ref, "\(name) count \(count) scale \(scale)")
                    XCTAssertEqual(Array(got[count...]), [UInt8](repeating: 0xA5, count: 9), "\(name) wrote past count")
                }
            }
        }
    }

    /// The fast kernels compute what cnx_qref.h (the reference executor's int8 arithmetic)
    /// specifies: the quantizer, and the dequantized linear layer, bit for bit.
    func testMatchesQRefReference() {
        var rng = QRandom(10)
        let values = rng.floats(4099, -20, 20) + [.nan, .infinity, -.infinity]
        var ours = [UInt8](repeating: 0, count: values.count), theirs = ours
        cnx_quantize_u8_reference(values, Int64(values.count), 0.07, 131, &theirs)
        forEachQISA { _, name in
            cnx_quantize_u8(values, Int64(values.count), 0.07, 131, &ours)
            XCTAssertEqual(ours, theirs, name)
        }

        let (m, n, k) = (29, 97, 200)
        let a = rng.u8(m * k), b = rng.s8(k * n)
        let pa = QBuffer(a), w = PackedWeights(b, k: k, n: n)
        let e = parameters(&rng, acc: naiveGemmS32(m: m, n: n, k: k, a: a, lda: k, b: b), m: m, n: n, w: w, act: 0)
        var expected = [Float](repeating: 0, count: m * n)
        cnx_qlinear_reference(Int64(m), Int64(n), Int64(k), a, b, e.aZero, e.aScale, e.wScale!.const, e.bias!.const, &expected)
        XCTAssertTrue(qBitsEqual(fusedF32(.reference, m: m, n: n, k: k, a: pa, lda: k, w: w, e), expected), "ref")
        forEachQISA { _, name in
            XCTAssertTrue(qBitsEqual(fusedF32(.dispatched, m: m, n: n, k: k, a: pa, lda: k, w: w, e), expected), name)
        }
    }
}
