import CKernels
import XCTest

/// cnx_activation_inplace_f32 (cnx_fast.h): the scalar reference against the formulas in Double,
/// every SIMD path against the reference and against Double, and the special values.
final class FastActivationTests: XCTestCase {
    private func apply(ref: Bool, _ x: [Float], act: Int32) -> [Float] {
        let buffer = FloatBuffer(x)
        (ref ? cnx_activation_inplace_f32_ref : cnx_activation_inplace_f32)(buffer.pointer, Int64(x.count), act)
        return buffer.array
    }

    /// [-20, 20] in steps of 1/256, uniform values in [-20, 20], and values of every magnitude from
    /// 2^-30 to 2^6 of either sign.
    private static let inputs: [Float] = {
        var rng = LCG(40)
        let grid = (-5120...5120).map { Float($0) / 256 }
        let uniform = rng.floats(3001, scale: 20)
        let magnitudes = (0..<3001).map { _ -> Float in
            let e = (rng.next() + 1) * 18 - 30  // exponent in [-30, 6]
            return (rng.next() < 0 ? -1 : 1) * Float(pow(2, Double(e)))
        }
        return grid + uniform + magnitudes
    }()

    /// The bound, relative to |y|, the reference and the SIMD paths are held to against Double
    /// (cnx_fast.h). SiLU: y = x / (1 + e), e = exp(-x): e within 1 ulp, then two roundings, each at
    /// most 2^-24 relative: 4 units (measured 2.6). tanh GELU: the same plus the error of t =
    /// x (C1 + C2 x^2) (the rounding of C1 and C2 to float, and four float operations: up to 5
    /// units relative), which exp(-t) multiplies by |t| (measured 2.8 (1 + |t|) units).
    private func bound(_ act: Int32, _ x: Float) -> Double {
        switch act {
        case CNX_ACT_GELU_TANH: return (4 + 5 * abs(2 * tanhGeluArgument(Double(x)))) * floatUnit
        default: return 4 * floatUnit
        }
    }

    /// Below 1e-30 the results are compared absolutely: exp(-t) overflows past t = -88.7, where
    /// the exact |y| is below 1e-36 (and denormal results have fewer significant bits).
    private static let tinyResult = 1e-30, tinyError = 1e-35

    func testActivationCodes() {
        XCTAssertEqual(CNX_ACT_NONE, 0)
        XCTAssertEqual(CNX_ACT_GELU, 1)
        XCTAssertEqual(CNX_ACT_GELU_TANH, 2)
        XCTAssertEqual(CNX_ACT_SILU, 3)
        XCTAssertEqual(CNX_ACT_GELU_QUADRATIC, 4)
    }

    /// The oracle's two forms of tanh GELU agree where both are accurate in Double.
    func testOracleFormsAgree() {
        for i in -3000...3000 {
            let x = Double(i) / 1000
            let z = tanhGeluArgument(x)
            guard abs(z) <= 3 else { continue }
            let tanhForm = 0.5 * x * (1 + tanh(z)), sigmoidForm = x / (1 + exp(-2 * z))
            XCTAssertEqual(tanhForm, sigmoidForm, accuracy: 1e-13 * max(abs(tanhForm), 1e-300), "x \(x)")
        }
        // And the sigmoid form is what the definition gives far out, to Double's own accuracy:
        // 0.5 x (1 + tanh z) at x = -2 (z = -1.87, 1 + tanh z = 0.0233: 5 bits lost).
        let z = tanhGeluArgument(-2)
        XCTAssertEqual(activationExact(CNX_ACT_GELU_TANH, -2), 0.5 * -2 * (1 + tanh(z)), accuracy: 1e-14)
    }

    /// y = act(x) against the formula in Double, point by point, within bound(act, x) (absolutely
    /// below tinyResult).
    private func checkAgainstDouble(
        _ y: [Float], _ x: [Float], act: Int32, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var worst = 0.0, at: Float = 0, tinyWorst = 0.0
        for i in 0..<x.count {
            let exact = activationExact(act, Double(x[i])), err = abs(Double(y[i]) - exact)
            if abs(exact) < Self.tinyResult {
                tinyWorst = max(tinyWorst, err.isNaN ? .infinity : err)
            } else {
                let ratio = err / abs(exact) / bound(act, x[i])
                if !(ratio <= worst) { (worst, at) = (ratio, x[i]) }
            }
        }
        XCTAssertLessThanOrEqual(worst, 1, "\(label) vs Double: worst error / bound at \(at)", file: file, line: line)
        XCTAssertLessThanOrEqual(tinyWorst, Self.tinyError, "\(label) vs Double where |y| < 1e-30", file: file, line: line)
    }

    /// The scalar reference against the formulas in Double, point by point.
    func testReferenceMatchesDouble() {
        let x = Self.inputs
        for (act, name) in activationCodes where act != CNX_ACT_GELU && act != CNX_ACT_NONE && act != CNX_ACT_GELU_QUADRATIC {
            checkAgainstDouble(apply(ref: true, x, act: act), x, act: act, "\(name) ref")
        }
    }

    /// Every path (the SIMD ones with masked tails: odd counts) against the reference, and the
    /// SIMD results against Double with the reference's bound.
    func testEveryPathMatchesReferenceAndDouble() {
        let x = Self.inputs
        for (act, name) in activationCodes where act != CNX_ACT_NONE {
            let ref = apply(ref: true, x, act: act)
            forEachISA { _, path in
                for count in [x.count, 1, 7, 13, 17, 40, 97] {
                    let got = apply(ref: false, Array(x.prefix(count)), act: act)
                    var worst: Float = 0, at: Float = 0
                    for i in 0..<count {
                        if act == CNX_ACT_GELU_QUADRATIC {
                            // One specification, evaluated in one order on every path.
                            XCTAssertEqual(got[i].bitPattern, ref[i].bitPattern, "\(path) \(name) at \(x[i])")
                        } else if act == CNX_ACT_GELU {
                            // Exact GELU's own promise (cnx_gelu_inplace_f32): 2e-6 absolute of erff's.
                            XCTAssertEqual(got[i], ref[i], accuracy: 2e-6, "\(path) \(name) at \(x[i])")
                        } else if abs(ref[i]) < Float(Self.tinyResult) {
                            XCTAssertLessThanOrEqual(abs(Double(got[i]) - Double(ref[i])), Self.tinyError, "\(path) \(name) at \(x[i])")
                        } else {
                            let rel = abs(got[i] - ref[i]) / abs(ref[i])
                            if rel > worst { (worst, at) = (rel, x[i]) }
                        }
                    }
                    // cnx_fast.h: 3.0e-7 measured; the exp's 1 ulp plus two roundings on either side.
                    XCTAssertLessThanOrEqual(Double(worst), 6 * floatUnit, "\(path) \(name) count \(count) vs ref, worst at \(at)")
                }
                guard act != CNX_ACT_GELU && act != CNX_ACT_GELU_QUADRATIC else { return }
                checkAgainstDouble(apply(ref: false, x, act: act), x, act: act, "\(path) \(name)")
            }
        }
    }

    /// CNX_ACT_GELU is cnx_gelu_inplace_f32, bit for bit, on every path; none and unknown codes
    /// leave the input alone.
    func testGeluCodeAndNoActivation() {
        let x = Self.inputs
        var gelu = x
        cnx_gelu_inplace_f32_ref(&gelu, Int64(gelu.count))
        XCTAssertTrue(qBitsEqual(apply(ref: true, x, act: CNX_ACT_GELU), gelu), "ref")
        forEachISA { _, path in
            var gelu = x
            cnx_gelu_inplace_f32(&gelu, Int64(gelu.count))
            XCTAssertTrue(qBitsEqual(apply(ref: false, x, act: CNX_ACT_GELU), gelu), path)
            for act: Int32 in [CNX_ACT_NONE, 5, -1, 99] {
                XCTAssertTrue(qBitsEqual(apply(ref: false, x, act: act), x), "\(path) act \(act)")
                XCTAssertTrue(qBitsEqual(apply(ref: true, x, act: act), x), "ref act \(act)")
            }
        }
    }

    /// The quadratic GELU against GELU in Double: within quadraticGELUError (plus the result's own
    /// rounding) everywhere, and it is the quadratic table, not the exact one: somewhere it is
    /// more than 100 times the exact GELU's 4e-8 away. Special values as max(x, 0) past the table,
    /// the same bits on every path (testEveryPathMatchesReferenceAndDouble covers the grid).
    func testQuadraticGELU() {
        let x = Self.inputs
        let ref = apply(ref: true, x, act: CNX_ACT_GELU_QUADRATIC)
        var worst = 0.0, at: Float = 0
        for i in 0..<x.count {
            let err = abs(Double(ref[i]) - geluExact(Double(x[i])))
            XCTAssertLessThanOrEqual(err, quadraticGELUError + Double(ref[i].ulp), "at \(x[i])")
            if err > worst { (worst, at) = (err, x[i]) }
        }
        XCTAssertGreaterThan(worst, 4e-6, "the quadratic table's error, worst at \(at)")
        let special: [Float] = [0, -0.0, 1e-30, -1e-30, 5.99, 6, -6, 7, -7, 1e10, -1e10, .infinity, -.infinity, .nan]
        let expected: [Float] = [0, -0.0, 5e-31, -5e-31]
        let y = apply(ref: true, special, act: CNX_ACT_GELU_QUADRATIC)
        for (i, e) in expected.enumerated() { XCTAssertEqual(y[i].bitPattern, e.bitPattern, "at \(special[i])") }
        XCTAssertEqual(Array(y[6...12]), [0, 7, 0, 1e10, 0, .infinity, 0])
        XCTAssertTrue(y[13].isNaN)
        XCTAssertEqual(Double(y[4]), geluExact(5.99), accuracy: quadraticGELUError)
        XCTAssertEqual(Double(y[5]), 6)
        forEachISA { _, path in
            XCTAssertTrue(qBitsEqual(apply(ref: false, special, act: CNX_ACT_GELU_QUADRATIC), y), path)
        }
    }

    /// Zeros keep their sign, tiny x give x / 2, large positive x give x, large negative x give
    /// -0 (or a tiny negative), +inf gives +inf, -inf and NaN give NaN; on every path.
    func testSpecialValues() {
        let tiny: [Float] = [
            0, -0.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude,
            -.leastNormalMagnitude, 1e-30, -1e-20, 1e-10, -1e-10,
        ]
        let largePositive: [Float] = [30, 88, 89, 100, 1e4, 1e10, 1e13, 3e38, .greatestFiniteMagnitude]
        let largeNegative: [Float] = [-30, -89, -100, -1e4, -1e10, -1e13, -3e38, -.greatestFiniteMagnitude]
        for act in [CNX_ACT_GELU_TANH, CNX_ACT_SILU] {
            let x = tiny + largePositive + largeNegative + [.infinity, -.infinity, .nan]
            let ref = apply(ref: true, x, act: act)
            let paths: [(String, [Float])] =
                [("ref", ref)]
                + supportedISAs().map { isa in
                    cnx_isa_force(Int32(isa.rawValue))
                    defer { cnx_isa_force(-1) }
                    return (String(cString: cnx_isa_name(isa)), apply(ref: false, x, act: act))
                }
            for (path, y) in paths {
                let label = "\(path) act \(act)"
                for (i, v) in tiny.enumerated() {
                    // 0.5 x (1 + O(x)): x / 2, one rounding (denormal halves may round either way).
                    XCTAssertEqual(y[i], 0.5 * v, accuracy: max(2e-7 * abs(v), .leastNonzeroMagnitude), "\(label) at \(v)")
                    XCTAssertEqual(y[i].sign, v.sign, "\(label) sign at \(v)")
                }
                for (i, v) in largePositive.enumerated() {
                    XCTAssertEqual(y[tiny.count + i], v, "\(label) at \(v)")
                }
                for (i, v) in largeNegative.enumerated() {
                    let got = y[tiny.count + largePositive.count + i]
                    XCTAssertTrue(got <= 0 && got > -3e-12, "\(label) at \(v): \(got)")
                }
                let n = tiny.count + largePositive.count + largeNegative.count
                XCTAssertEqual(y[n], .infinity, "\(label) +inf")
                XCTAssertTrue(y[n + 1].isNaN, "\(label) -inf gives NaN, as x sigmoid(x)")
                XCTAssertTrue(y[n + 2].isNaN, "\(label) NaN")
            }
        }
    }
}
