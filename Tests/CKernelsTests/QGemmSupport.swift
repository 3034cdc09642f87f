import CKernels
import XCTest

/// Deterministic pseudo-random bytes and floats (a 64-bit LCG), so failures reproduce.
struct QRandom {
    private var state: UInt64

    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x2545_F491_4F6C_DD1D }

    mutating func next32() -> UInt32 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt32(truncatingIfNeeded: state >> 32)
    }

    /// Uniform over all 256 values.
    mutating func u8(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next32() >> 24) } }
    mutating func s8(_ count: Int) -> [Int8] { (0..<count).map { _ in Int8(truncatingIfNeeded: next32() >> 24) } }

    /// A float in [lo, hi].
    mutating func float(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * Float(next32() >> 8) / Float(1 << 24) }
    mutating func floats(_ count: Int, _ lo: Float, _ hi: Float) -> [Float] { (0..<count).map { _ in float(lo, hi) } }
}

/// A manually allocated, 64-byte aligned buffer: stable addresses, so tests can alias arguments
/// and lay out rows with leading dimensions.
final class QBuffer<T> {
    let pointer: UnsafeMutablePointer<T>
    let count: Int

    init(_ values: [T]) {
        count = values.count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride, alignment: 64)
        pointer = raw.bindMemory(to: T.self, capacity: max(count, 1))
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.initialize(from: base, count: count) }
        }
    }

    convenience init(repeating value: T, count: Int) { self.init([T](repeating: value, count: count)) }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    var array: [T] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    var const: UnsafePointer<T> { UnsafePointer(pointer) }
}

/// A packed int8 B (cnx_qgemm_pack_b) with its unpacked source.
final class PackedWeights {
    let k: Int, n: Int
    let b: [Int8]
    let bytes: Int
    let raw: UnsafeMutableRawPointer

    init(_ b: [Int8], k: Int, n: Int) {
        self.k = k
        self.n = n
        self.b = b
        bytes = cnx_qgemm_packed_b_bytes(Int64(k), Int64(n))
        raw = .allocate(byteCount: max(bytes, 1), alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0xA5, count: max(bytes, 1))  // padding must be overwritten
        b.withUnsafeBufferPointer { cnx_qgemm_pack_b($0.baseAddress, Int64(k), Int64(n), raw) }
    }

    deinit { raw.deallocate() }

    var pointer: UnsafeRawPointer { UnsafeRawPointer(raw) }
    var colSums: UnsafePointer<Int32> { cnx_qgemm_packed_col_sums(pointer, Int64(k), Int64(n)) }
}

/// The int8 paths this CPU supports, slowest first.
func supportedQISAs() -> [cnx_qisa] {
    [CNX_QISA_SCALAR, CNX_QISA_AVX2, CNX_QISA_AVX_VNNI, CNX_QISA_AVX512_VNNI, CNX_QISA_NEON, CNX_QISA_DOTPROD, CNX_QISA_I8MM]
        .filter { cnx_qisa_supported($0) != 0 }
}

/// Runs body once per supported int8 path with that path forced, then returns to automatic choice.
func forEachQISA(file: StaticString = #filePath, line: UInt = #line, _ body: (cnx_qisa, String) throws -> Void) rethrows {
    defer { cnx_qisa_force(-1) }
    for isa in supportedQISAs() {
        cnx_qisa_force(Int32(isa.rawValue))
        XCTAssertEqual(cnx_qisa_current(), isa, "forcing a supported path", file: file, line: line)
        try body(isa, String(cString: cnx_qisa_name(isa)))
    }
}

/// sum_k a[i][k] b[k][j] by the triple loop, wrapping like the kernels (exact for k <= 65793).
func naiveGemmS32(m: Int, n: Int, k: Int, a: [UInt8], lda: Int, b: [Int8]) -> [Int32] {
    var c = [Int32](repeating: 0, count: m * n)
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            c.withUnsafeMutableBufferPointer { pc in
                let (ap, bp, cp) = (pa.baseAddress!, pb.baseAddress!, pc.baseAddress!)
                for i in 0..<m {
                    for kk in 0..<k {
                        let av = Int32(ap[i * lda + kk])
                        let brow = bp + kk * n, crow = cp + i * n
                        for j in 0..<n { crow[j] = crow[j] &+ av &* Int32(brow[j]) }
                    }
                }
            }
        }
    }
    return c
}

/// max |a - b| / max(max |b|, 1): relative to the largest output, absolute where every output is
/// below 1 (a single tiny output, say an activation far in its negative tail, has no scale of its
/// own; the activations' pointwise accuracy is tested in FastActivationTests).
func qRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    relativeError(a, b, scaleAtLeast: 1)
}

/// max |a - b| over u8 outputs.
func qMaxByteDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    var d = 0
    for i in 0..<a.count { d = max(d, abs(Int(a[i]) - Int(b[i]))) }
    return d
}

/// Bitwise equality of float arrays (so -0 != +0 and NaN == same NaN).
func qBitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}
