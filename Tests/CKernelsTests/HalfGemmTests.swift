import CKernels
import Foundation
import XCTest

/// The half-precision-weight GEMM (cnx_half.h): every path against its scalar twin, the twins
/// against a Double oracle, and the conversions against independent definitions (Swift's
/// Float16 for binary16; nearest-of-two-neighbours in Double for bfloat16).
final class HalfGemmTests: XCTestCase {
    enum Kind { case bf16, f16 }

    /// The paths this CPU has, slowest first.
    private func paths() -> [cnx_hpath] {
        defer { cnx_hpath_force(-1) }
        return [CNX_HPATH_SCALAR, CNX_HPATH_FLOAT, CNX_HPATH_AVX512, CNX_HPATH_AVX512_BF16].filter {
            cnx_hpath_force(Int32($0.rawValue))
            return cnx_hpath_current() == $0
        }
    }

    private func pack(_ w: [Float], k: Int, n: Int, kind: Kind) -> [UInt16] {
        var bits = [UInt16](repeating: 0, count: w.count)
        var packed = [UInt16](repeating: 0xFFFF, count: cnx_hgemm_packed_b_halves(Int64(k), Int64(n)))
        w.withUnsafeBufferPointer { src in
            bits.withUnsafeMutableBufferPointer { dst in
                if kind == .bf16 {
                    cnx_bf16_from_f32_n(src.baseAddress, Int64(w.count), dst.baseAddress)
                } else {
                    cnx_f16_from_f32_n(src.baseAddress, Int64(w.count), dst.baseAddress)
                }
            }
        }
        bits.withUnsafeBufferPointer { b in
            packed.withUnsafeMutableBufferPointer { p in
                if kind == .bf16 {
                    cnx_hgemm_pack_b_bf16(b.baseAddress, Int64(k), Int64(n), p.baseAddress)
                } else {
                    cnx_hgemm_pack_b_f16(b.baseAddress, Int64(k), Int64(n), p.baseAddress)
                }
            }
        }
        return packed
    }

    typealias Gemm = (
        Int64, Int64, Int64, UnsafePointer<Float>?, Int64, UnsafePointer<UInt16>?, UnsafePointer<Float>?, Int32,
        UnsafePointer<Float>?, Int64, UnsafeMutablePointer<Float>?, Int64
    ) -> Void

    enum Residual { case none, separate, inPlace }

    /// Runs `gemm` on a fresh C (ldc = n + 3, the 3 extra columns must stay untouched).
    private func run(
        _ gemm: Gemm, m: Int, n: Int, k: Int, a: FloatBuffer, lda: Int, packed: [UInt16], bias: FloatBuffer?,
        act: Int32, residual: Residual, resValues: [Float]
    ) -> [Float] {
        let ldc = n + 3
        let c = FloatBuffer(repeating: -7, count: m * ldc)
        var res: FloatBuffer?
        switch residual {
        case .none: break
        case .separate: res = FloatBuffer(resValues)
        case .inPlace: for i in 0..<m * ldc { c.pointer[i] = resValues[i] }
        }
        packed.withUnsafeBufferPointer { p in
            let r: UnsafePointer<Float>? = residual == .inPlace ? c.const : res?.const
            gemm(
                Int64(m), Int64(n), Int64(k), a.const, Int64(lda), p.baseAddress, bias?.const, act, r, residual == .none ? 0 : Int64(ldc),
                c.pointer, Int64(ldc))
        }
        for i in 0..<m {
            for j in n..<ldc {
                let expected: Float = residual == .inPlace ? resValues[i * ldc + j] : -7
                XCTAssertEqual(c.pointer[i * ldc + j], expected, "column \(j) past n written")
            }
        }
        return (0..<m).flatMap { i in (0..<n).map { c.pointer[i * ldc + $0] } }
    }

    /// Each SIMD path against its twin, on odd sizes (K past one block, columns past one panel,
    /// rows past one row block), every epilogue. Without an activation the two must agree bit for
    /// bit (the twins emulate the same roundings in the same order); with one, within the
    /// activation's SIMD-vs-libm difference (6 ulp, cnx_fast.h; exact GELU's polynomial is within
    /// 4e-8 absolute, which dominates in its negative tail) plus the residual's rounding:
    /// 2^-21 (8 ulp) of |result| + |residual|, plus 1e-7 absolute.
    func testPathsMatchTheirTwins() {
        let available = paths()
        XCTAssertTrue(available.contains(CNX_HPATH_SCALAR))
        defer { cnx_hpath_force(-1) }
        var rng = LCG(12)
        let shapes: [(Int, Int, Int)] = [(1, 1, 1), (5, 17, 3), (15, 33, 31), (70, 70, 300), (3, 40, 0), (29, 65, 513), (1, 96, 1031)]
        var checked = 0
        for (m, n, k) in shapes {
            let lda = k + 2
            let a = FloatBuffer(rng.floats(m * lda, scale: 2))
            let w = rng.floats(k * n, scale: 0.5)
            let biasValues = rng.floats(n)
            let resValues = rng.floats(m * (n + 3), scale: 3)
            for kind in [Kind.bf16, .f16] {
                let packed = pack(w, k: k, n: n, kind: kind)
                for path in available {
                    cnx_hpath_force(Int32(path.rawValue))
                    let simd: Gemm = kind == .bf16 ? cnx_gemm_bf16 : cnx_gemm_f16
                    let twin: Gemm =
                        kind == .f16 ? cnx_gemm_f16_ref : path == CNX_HPATH_AVX512_BF16 ? cnx_gemm_bf16_dot_ref : cnx_gemm_bf16_wide_ref
                    for act in [CNX_ACT_NONE, CNX_ACT_GELU, CNX_ACT_GELU_TANH, CNX_ACT_SILU, CNX_ACT_GELU_QUADRATIC] {
                        for residual in [Residual.none, .separate, .inPlace] {
                            let bias = act == CNX_ACT_GELU ? nil : FloatBuffer(biasValues)
                            let got = run(
                                simd, m: m, n: n, k: k, a: a, lda: lda, packed: packed, bias: bias, act: act, residual: residual,
                                resValues: resValues)
                            let want = run(
                                twin, m: m, n: n, k: k, a: a, lda: lda, packed: packed, bias: bias, act: act, residual: residual,
                                resValues: resValues)
                            let label = "\(kind) \(String(cString: cnx_hpath_name(path))) \(m)x\(n)x\(k) act \(act) \(residual)"
                            for i in 0..<got.count {
                                if act == CNX_ACT_NONE {
                                    XCTAssertEqual(got[i].bitPattern, want[i].bitPattern, "\(label) at \(i): \(got[i]) vs \(want[i])")
                                } else {
                                    let r = residual == .none ? 0 : abs(resValues[(i / n) * (n + 3) + i % n])
                                    let bound = Float(pow(2.0, -21.0)) * (abs(want[i]) + r) + 1e-7
                                    XCTAssertLessThanOrEqual(abs(got[i] - want[i]), bound, "\(label) at \(i): \(got[i]) vs \(want[i])")
                                }
                                if got[i] != want[i] && act == CNX_ACT_NONE { break }
                            }
                            checked += 1
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, shapes.count * 2 * 12)
    }

    /// Activations already in bfloat16 (cnx_gemm_bf16_a16, what a bf16 block runs between its
    /// norm and its layers): on every path, the float output equals cnx_gemm_bf16 on the float
    /// activations bit for bit where both run the dot computation (the dot path, or the dot twin),
    /// the bfloat16 output is that float output rounded by cnx_round_bf16, the rounding itself is
    /// its twin's (denormals to zero, nearest even), and the columns past n stay untouched.
    /// The LayerNorm that writes bfloat16 rows (bfloat16 blocks' norm) gives the bits of the float
    /// LayerNorm rounded by cnx_round_bf16, tails and gamma included, where the dot path runs;
    /// elsewhere it declines and writes nothing.
    func testLayerNormToBF16IsTheFloatNormRounded() {
        defer { cnx_hpath_force(-1) }
        var rng = LCG(37)
        for (rows, c) in [(3, 96), (5, 37), (2, 768), (4, 1), (7, 130)] {
            let x = rng.floats(rows * c, scale: 3), gammaValues = rng.floats(c)
            for gamma in [nil, gammaValues] {
                var floats = [Float](repeating: 0, count: rows * c)
                cnx_layernorm_rows_f32(x, Int64(rows), Int64(c), 1e-6, gamma, nil, &floats)
                for path in paths() {
                    cnx_hpath_force(Int32(path.rawValue))
                    let label = "\(String(cString: cnx_hpath_name(path))) \(rows)x\(c) gamma \(gamma != nil)"
                    var got = [UInt16](repeating: 0xABCD, count: rows * c)
                    let ran = cnx_layernorm_rows_bf16(x, Int64(rows), Int64(c), 1e-6, gamma, nil, &got)
                    if path == CNX_HPATH_AVX512_BF16 {
                        XCTAssertEqual(ran, 1, label)
                        var want = [UInt16](repeating: 0, count: rows * c)
                        cnx_round_bf16(floats, Int64(rows * c), &want)
                        XCTAssertEqual(got, want, label)
                    } else {
                        XCTAssertEqual(ran, 0, label)
                        XCTAssertEqual(got, [UInt16](repeating: 0xABCD, count: rows * c), label)
                    }
                }
            }
        }
    }

    func testBF16InputsMatchTheFloatInputPath() {
        defer { cnx_hpath_force(-1) }
        var rng = LCG(31)
        let shapes: [(Int, Int, Int)] = [(1, 1, 2), (5, 17, 4), (15, 33, 30), (70, 70, 300), (29, 65, 512), (64, 96, 1536), (3, 40, 0)]
        var checked = 0
        for (m, n, k) in shapes {
            let lda = k + 2, ldc = n + 3
            var values = rng.floats(m * lda, scale: 2)
            // Denormals, which the rounding flushes to zero.
            if values.count > 3 { values[1] = Float.leastNormalMagnitude / 8; values[2] = -Float.leastNormalMagnitude / 3 }
            let a16 = [UInt16](unsafeUninitializedCapacity: values.count) { buf, count in
                cnx_round_bf16_ref(values, Int64(values.count), buf.baseAddress)
                count = values.count
            }
            let a = FloatBuffer(a16.map { cnx_f32_from_bf16($0) })
            let packed = pack(rng.floats(k * n, scale: 0.5), k: k, n: n, kind: .bf16)
            let biasValues = rng.floats(n), resValues = rng.floats(m * ldc, scale: 3)
            for path in paths() {
                cnx_hpath_force(Int32(path.rawValue))
                // The float-input GEMM that computes what the bf16-input one does on this path.
                let floatInput: Gemm = path == CNX_HPATH_AVX512_BF16 ? cnx_gemm_bf16 : cnx_gemm_bf16_dot_ref
                var rounded = [UInt16](repeating: 0, count: values.count)
                cnx_round_bf16(values, Int64(values.count), &rounded)
                XCTAssertEqual(rounded, a16, "cnx_round_bf16 on \(String(cString: cnx_hpath_name(path)))")
                for act in [CNX_ACT_NONE, CNX_ACT_GELU, CNX_ACT_SILU] {
                    for residual in [Residual.none, .separate, .inPlace] {
                        let label = "\(String(cString: cnx_hpath_name(path))) \(m)x\(n)x\(k) act \(act) \(residual)"
                        let bias = act == CNX_ACT_GELU ? nil : FloatBuffer(biasValues)
                        let want = run(
                            floatInput, m: m, n: n, k: k, a: a, lda: lda, packed: packed, bias: bias, act: act, residual: residual,
                            resValues: resValues)
                        let bf16Input: Gemm = { m, n, k, _, lda, p, bias, act, r, ldr, c, ldc in
                            cnx_gemm_bf16_a16(m, n, k, a16, lda, p, bias, act, r, ldr, c, nil, ldc)
                        }
                        let got = run(
                            bf16Input, m: m, n: n, k: k, a: a, lda: lda, packed: packed, bias: bias, act: act, residual: residual,
                            resValues: resValues)
                        if path == CNX_HPATH_AVX512_BF16, act != CNX_ACT_NONE, residual == .inPlace, k > 256 {
                            // cnx_gemm_bf16 hands this case (a residual in C behind an activation,
                            // K past one block) to its twin, whose activation is libm's: within the
                            // SIMD-vs-libm bound of testPathsMatchTheirTwins.
                            for i in 0..<got.count {
                                let r = abs(resValues[(i / n) * ldc + i % n])
                                let bound = Float(pow(2.0, -21.0)) * (abs(want[i]) + r) + 1e-7
                                XCTAssertLessThanOrEqual(abs(got[i] - want[i]), bound, "\(label) at \(i)")
                            }
                        } else {
                            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), label)
                        }
                        guard residual != .inPlace else { continue }
                        // bfloat16 output: the float output rounded.
                        var c16 = [UInt16](repeating: 0xABCD, count: m * ldc)
                        let res = residual == .separate ? FloatBuffer(resValues) : nil
                        cnx_gemm_bf16_a16(
                            Int64(m), Int64(n), Int64(k), a16, Int64(lda), packed, bias?.const, act, res?.const,
                            res == nil ? 0 : Int64(ldc),
                            nil, &c16, Int64(ldc))
                        for i in 0..<m {
                            var row = [UInt16](repeating: 0, count: n)
                            cnx_round_bf16_ref(Array(want[(i * n)..<(i * n + n)]), Int64(n), &row)
                            XCTAssertEqual(Array(c16[(i * ldc)..<(i * ldc + n)]), row, "\(label) bf16 output row \(i)")
                            XCTAssertEqual(Array(c16[(i * ldc + n)..<(i * ldc + ldc)]), [0xABCD, 0xABCD, 0xABCD], "\(label) past n")
                        }
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, shapes.count * 6)
        // The rounding's own definition: denormals to a zero of their sign, then nearest even.
        var out = [UInt16](repeating: 0, count: 4)
        let tiny = Float.leastNormalMagnitude / 8
        cnx_round_bf16_ref([tiny, -tiny, 1.00390625, 1.01171875], 4, &out)
        XCTAssertEqual(out, [0x0000, 0x8000, 0x3F80, 0x3F82])
    }

    /// The twins against the sum in Double of the products of the values they multiply: the
    /// widened ones use A as it is and B rounded to the weight dtype, the dot one A rounded to
    /// bfloat16 too. Float accumulation of k terms: within k 2^-24 sum |a b| (plus the bias).
    func testTwinsAgainstDouble() {
        var rng = LCG(5)
        let (m, n, k) = (6, 37, 301)
        let a = FloatBuffer(rng.floats(m * k, scale: 2))
        let w = rng.floats(k * n)
        let bias = FloatBuffer(rng.floats(n))
        for (kind, twin, roundA) in [
            (Kind.bf16, cnx_gemm_bf16_wide_ref as Gemm, false), (.bf16, cnx_gemm_bf16_dot_ref, true), (.f16, cnx_gemm_f16_ref, false),
        ] {
            let packed = pack(w, k: k, n: n, kind: kind)
            let got = run(
                twin, m: m, n: n, k: k, a: a, lda: k, packed: packed, bias: bias, act: CNX_ACT_NONE, residual: .none, resValues: [])
            let wr = w.map { kind == .bf16 ? cnx_f32_from_bf16(cnx_bf16_from_f32($0)) : cnx_f32_from_f16(cnx_f16_from_f32($0)) }
            for i in 0..<m {
                for j in 0..<n {
                    var s = Double(bias.pointer[j]), mag = abs(s)
                    for kk in 0..<k {
                        let x = a.pointer[i * k + kk]
                        let xa = roundA ? cnx_f32_from_bf16(cnx_bf16_from_f32(x)) : x
                        s += Double(xa) * Double(wr[kk * n + j])
                        mag += abs(Double(xa) * Double(wr[kk * n + j]))
                    }
                    XCTAssertLessThanOrEqual(
                        abs(Double(got[i * n + j]) - s), Double(k + 1) * pow(2.0, -24) * mag, "\(kind) roundA \(roundA) (\(i), \(j))")
                }
            }
        }
    }

    /// The default is the best available path except where the bf16 dot product multiplies slower
    /// than float FMAs; CNX_HPATH chooses any available path; forcing is clamped to the hardware.
    func testPathSelection() {
        let saved = getenv("CNX_HPATH").map { String(cString: $0) }
        defer {
            if let saved { setenv("CNX_HPATH", saved, 1) } else { unsetenv("CNX_HPATH") }
            cnx_hpath_force(-1)
        }
        unsetenv("CNX_HPATH")
        let best = cnx_hpath_available()
        let ratio = cnx_hpath_bf16_dot_time_ratio()
        if best == CNX_HPATH_AVX512_BF16 {
            // Measured once per process: a positive figure, and the default follows it.
            XCTAssertGreaterThan(ratio, 0.2)
            XCTAssertLessThan(ratio, 50)
            XCTAssertEqual(cnx_hpath_detect(), ratio > CNX_BF16_DOT_MAX_TIME_RATIO ? CNX_HPATH_AVX512 : CNX_HPATH_AVX512_BF16)
            setenv("CNX_HPATH", "avx512bf16", 1)
            XCTAssertEqual(cnx_hpath_detect(), CNX_HPATH_AVX512_BF16, "an explicit request for the dot product")
            unsetenv("CNX_HPATH")
        } else {
            XCTAssertEqual(cnx_hpath_detect(), best)
            XCTAssertEqual(ratio, 0, "no AVX512_BF16: nothing measured")
        }
        setenv("CNX_HPATH", "scalar", 1)
        XCTAssertEqual(cnx_hpath_detect(), CNX_HPATH_SCALAR)
        setenv("CNX_HPATH", "avx512", 1)
        XCTAssertEqual(cnx_hpath_detect(), best.rawValue >= CNX_HPATH_AVX512.rawValue ? CNX_HPATH_AVX512 : CNX_HPATH_SCALAR)
        cnx_hpath_force(99)
        XCTAssertEqual(cnx_hpath_current(), best)
        cnx_hpath_force(Int32(CNX_HPATH_SCALAR.rawValue))
        XCTAssertEqual(String(cString: cnx_hpath_name(cnx_hpath_current())), "scalar")
        // A lowered float path lowers this one: CNX_ISA=avx2 leaves the float path (weights
        // widened at load for the AVX2 float GEMM), scalar the scalar one.
        defer { cnx_isa_force(-1) }
        unsetenv("CNX_HPATH")
        cnx_isa_force(Int32(CNX_ISA_AVX2.rawValue))
        if cnx_isa_current() == CNX_ISA_AVX2 { XCTAssertEqual(cnx_hpath_detect(), CNX_HPATH_FLOAT) }
        cnx_isa_force(Int32(CNX_ISA_SCALAR.rawValue))
        XCTAssertEqual(cnx_hpath_detect(), CNX_HPATH_SCALAR)
        setenv("CNX_HPATH", "float", 1)
        cnx_isa_force(-1)
        XCTAssertEqual(cnx_hpath_detect(), best == CNX_HPATH_SCALAR ? CNX_HPATH_SCALAR : CNX_HPATH_FLOAT)
    }

    // MARK: - Conversions

    /// bfloat16 rounding by its definition: the nearer of the two bfloat16 neighbours of x (ties to
    /// the even one), in Double, the one past the largest finite value standing for infinity.
    private func bf16Oracle(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(u >> 16) | 0x40 }
        let lo = u & 0xFFFF_0000, hi = lo &+ 0x1_0000
        func value(_ b: UInt32) -> Double {
            if b & 0x7FFF_FFFF == 0x7F80_0000 { return (b >> 31 == 1 ? -1 : 1) * pow(2.0, 128) }
            return Double(Float(bitPattern: b))
        }
        if u & 0xFFFF == 0 { return UInt16(lo >> 16) }
        let dl = abs(Double(x) - value(lo)), dh = abs(Double(x) - value(hi))
        if dl < dh { return UInt16(lo >> 16) }
        if dh < dl { return UInt16(hi >> 16) }
        return (lo >> 16) & 1 == 0 ? UInt16(lo >> 16) : UInt16(hi >> 16)
    }

    func testBFloat16RoundsToNearestEven() {
        var samples: [Float] = [
            0, -0, 1, -1, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, Float(bitPattern: 0x007F_FFFF),
            Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_8001),
            Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x0000_8000),
            Float(bitPattern: 0x0001_8000),
        ]
        var state: UInt64 = 99
        for _ in 0..<300_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            samples.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 29)))
        }
        for x in samples where !x.isNaN {
            XCTAssertEqual(cnx_bf16_from_f32(x), bf16Oracle(x), "bfloat16 of \(x) (\(String(x.bitPattern, radix: 16)))")
        }
        // Worked cases: ties go to even, the largest finite float rounds up to infinity,
        // denormals keep their value (not flushed), signalling NaN comes back quiet.
        XCTAssertEqual(cnx_bf16_from_f32(Float(bitPattern: 0x3F80_8000)), 0x3F80)
        XCTAssertEqual(cnx_bf16_from_f32(Float(bitPattern: 0x3F81_8000)), 0x3F82)
        XCTAssertEqual(cnx_bf16_from_f32(.greatestFiniteMagnitude), 0x7F80)
        XCTAssertEqual(cnx_bf16_from_f32(Float(bitPattern: 0x0001_8000)), 0x0002)
        XCTAssertEqual(cnx_bf16_from_f32(Float(bitPattern: 0x7FA0_0000)), 0x7FE0)
        XCTAssertEqual(cnx_bf16_from_f32(-Float.nan) & 0x8000, 0x8000)
        XCTAssertTrue(cnx_f32_from_bf16(cnx_bf16_from_f32(.nan)).isNaN)
        for h in [UInt16(0x3F80), 0xC2F7, 0x0001, 0x7F80, 0xFF80] {
            XCTAssertEqual(cnx_bf16_from_f32(cnx_f32_from_bf16(h)), h)
        }
    }

    func testFloat16MatchesSwiftFloat16() {
        for h in 0...UInt16.max {
            let got = cnx_f32_from_f16(h), want = Float(Float16(bitPattern: h))
            if want.isNaN { XCTAssertTrue(got.isNaN, "\(h)") } else { XCTAssertEqual(got.bitPattern, want.bitPattern, "widen \(h)") }
        }
        var samples: [Float] = [
            0, -0, 65504, 65519.99, 65520, -65520, 1e10, .infinity, -.infinity, 6.1035156e-05, 5.9604645e-08,
            2.9802322e-08, 2.9802326e-08, 8.940697e-08, -1.4901161e-07, 1e-30, .leastNonzeroMagnitude,
        ]
        var state: UInt64 = 7
        for _ in 0..<300_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let bits = UInt32(truncatingIfNeeded: state >> 29)
            // Half of them in and around binary16's range (exponents 2^-26 .. 2^17).
            samples.append(
                bits & 1 == 0 ? Float(bitPattern: bits) : Float(bitPattern: (bits & 0x807F_FFFF) | ((101 + (bits >> 23) % 43) << 23)))
        }
        for x in samples {
            let got = cnx_f16_from_f32(x), want = Float16(x).bitPattern
            if x.isNaN {
                XCTAssertTrue(Float16(bitPattern: got).isNaN, "\(x)")
                XCTAssertEqual(got & 0x8000, UInt16(x.bitPattern >> 16) & 0x8000)
            } else {
                XCTAssertEqual(got, want, "binary16 of \(x) (\(String(x.bitPattern, radix: 16)))")
            }
        }
    }
}
