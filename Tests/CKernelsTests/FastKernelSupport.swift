import CKernels
import XCTest

/// Deterministic pseudo-random floats (a 64-bit LCG), so failures reproduce.
struct LCG {
    private var state: UInt64

    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }

    /// A float in [-1, 1].
    mutating func next() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
    }

    mutating func floats(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in next() * scale }
    }
}

/// A manually allocated float buffer: stable addresses, so tests can alias arguments.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
        for i in 0..<count { pointer[i] = values[i] }
    }

    convenience init(repeating value: Float, count: Int) {
        self.init([Float](repeating: value, count: count))
    }

    deinit { pointer.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    var const: UnsafePointer<Float> { UnsafePointer(pointer) }
}

/// max |a - b| / max |b|: the accuracy measure the kernels promise (0 when both are zero).
/// With `scaleAtLeast`, the scale is at least that (absolute error below it); NaN is infinite.
func relativeError(_ a: [Float], _ b: [Float], scaleAtLeast floor: Float = 0) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = floor
    for i in 0..<a.count {
        diff = max(diff, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    if diff.isNaN { return .infinity }
    return scale == 0 ? diff : diff / scale
}

/// The kernel paths this CPU supports, slowest first (forcing is clamped to the hardware).
func supportedISAs() -> [cnx_isa] {
    var paths: [cnx_isa] = []
    for isa in [CNX_ISA_SCALAR, CNX_ISA_AVX2, CNX_ISA_AVX512, CNX_ISA_NEON] {
        cnx_isa_force(Int32(isa.rawValue))
        if cnx_isa_current() == isa { paths.append(isa) }
    }
    cnx_isa_force(-1)
    return paths
}

/// Runs body once per supported path with that path forced, then returns to automatic choice.
func forEachISA(_ body: (cnx_isa, String) throws -> Void) rethrows {
    defer { cnx_isa_force(-1) }
    for isa in supportedISAs() {
        cnx_isa_force(Int32(isa.rawValue))
        try body(isa, String(cString: cnx_isa_name(isa)))
    }
}

/// GELU in Double, the value every path approximates.
func geluExact(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

/// The activations of cnx_fast.h (CNX_ACT_*) in Double, from their definitions: the oracle every
/// path approximates. tanh GELU is 0.5 x (1 + tanh z), z = sqrt(2/pi) (x + 0.044715 x^3); where
/// 1 + tanh z cancels (z < -1: it loses up to 2 |z| / ln 2 bits there, even in Double), the same
/// quantity as x / (1 + exp(-2 z)) (1 + tanh z = 2 / (1 + exp(-2 z)));
/// FastActivationTests.testOracleFormsAgree checks the two forms against each other.
func activationExact(_ act: Int32, _ x: Double) -> Double {
    switch act {
    case CNX_ACT_GELU: return geluExact(x)
    case CNX_ACT_GELU_TANH:
        let z = tanhGeluArgument(x)
        return z >= -1 ? 0.5 * x * (1 + tanh(z)) : x / (1 + exp(-2 * z))
    case CNX_ACT_SILU: return x / (1 + exp(-x))  // x sigmoid(x)
    case CNX_ACT_GELU_QUADRATIC: return geluExact(x)  // within 1.12e-5: see quadraticGELUError
    default: return x
    }
}

/// z = sqrt(2/pi) (x + 0.044715 x^3), the argument of tanh in tanh GELU.
func tanhGeluArgument(_ x: Double) -> Double { (2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x) }

/// The activation codes with their names, for labels.
let activationCodes: [(Int32, String)] = [
    (CNX_ACT_NONE, "none"), (CNX_ACT_GELU, "gelu"),
    (CNX_ACT_GELU_TANH, "gelu_tanh"), (CNX_ACT_SILU, "silu"), (CNX_ACT_GELU_QUADRATIC, "gelu_quadratic"),
]

/// The largest distance of the quadratic GELU (CNX_ACT_GELU_QUADRATIC) from exact GELU
/// (scripts/gelu-table.py --intervals 32 --degree 2 prints 1.12e-5 for its float pipeline).
let quadraticGELUError = 1.12e-5

/// 2^-24: the relative size of half an ulp of a float, at most.
let floatUnit = Double(Float.ulpOfOne) / 2

/// Asserts the name a dispatcher prints for each of its paths (`cnx_isa_name`, `cnx_qisa_name`).
func assertPathNames<Path>(
    _ expected: KeyValuePairs<Path, String>, _ name: (Path) -> UnsafePointer<CChar>?,
    file: StaticString = #filePath, line: UInt = #line
) {
    for (path, text) in expected {
        XCTAssertEqual(name(path).map { String(cString: $0) }, text, file: file, line: line)
    }
}
