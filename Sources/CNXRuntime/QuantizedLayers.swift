import CKernels
import CNXGraph
import CNXReference

/// An int8 GEMM layer of a fused operation, ready for the VNNI kernels: weights packed once,
/// with their column sums (the zero-point correction) and per-channel scales, and the u8
/// quantization of the activation that enters it.
final class PackedQMatrix: @unchecked Sendable {
    let k: Int, n: Int
    let packed: UnsafeMutableRawPointer
    let columnSums: UnsafePointer<Int32>
    let weightScales: [Float]
    let inputScale: Float
    let inputZero: Int32
    /// 1 / the input's per-channel equalization scales (nil: none): the runtime multiplies the
    /// input by these where it is made (in the norm or the GRN) before quantizing it.
    let inverseChannelScales: [Float]?

    /// Packs an int8 layer's weight [K, N] with its parameters (read by `FusedPayload`).
    init(weight w: Tensor, _ q: Int8Parameters) throws {
        guard w.dtype == .int8, w.shape.count == 2 else {
            throw CNXError("an int8 layer needs a 2-D int8 weight, got \(w.dtype.name) \(w.shape)")
        }
        k = w.shape[0]
        n = w.shape[1]
        weightScales = q.weightScales
        inverseChannelScales = q.channelScales?.map { 1 / $0 }
        inputScale = q.activationScale
        inputZero = q.activationZero
        let bytes = cnx_qgemm_packed_b_bytes(Int64(k), Int64(n))
        packed = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        let k = self.k, n = self.n, packed = self.packed
        w.withUnsafeElementBytes { raw in
            cnx_qgemm_pack_b(raw.baseAddress!.assumingMemoryBound(to: Int8.self), Int64(k), Int64(n), packed)
        }
        columnSums = cnx_qgemm_packed_col_sums(packed, Int64(k), Int64(n))
    }

    deinit { packed.deallocate() }

    /// u8 rows of this layer's input from float rows.
    func quantize(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<UInt8>) {
        cnx_quantize_u8(x, Int64(count), inputScale, inputZero, q)
    }

    /// out (float) = residual + act(dequantized GEMM + bias), from u8 input rows, over the output
    /// columns `columns` (all by default; a range starts at a multiple of 16, the panel width);
    /// bias, residual and out are the whole matrices' (indexed from column 0).
    func multiply(
        _ a: UnsafePointer<UInt8>, rows: Int, lda: Int, columns: Range<Int>? = nil, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into out: UnsafeMutablePointer<Float>, ldo: Int
    ) {
        let (j0, w, b) = panels(columns)
        weightScales.withUnsafeBufferPointer { ws in
            cnx_qgemm_fused_f32(
                Int64(rows), Int64(w), Int64(k), a, Int64(lda), b, columnSums + j0, inputZero, inputScale,
                ws.baseAddress! + j0, bias.map { $0 + j0 }, act, residual.map { $0 + j0 }, Int64(ldr), out + j0, Int64(ldo))
        }
    }

    /// out (u8, quantized for `next`) = act(dequantized GEMM + bias), from u8 input rows: the
    /// hidden activation of a block goes from one int8 layer to the next without a float copy.
    /// Over `columns` as the float-output form.
    func multiply(
        _ a: UnsafePointer<UInt8>, rows: Int, lda: Int, columns: Range<Int>? = nil, bias: UnsafePointer<Float>?, act: Int32,
        requantizingFor next: PackedQMatrix, into out: UnsafeMutablePointer<UInt8>, ldo: Int
    ) {
        let (j0, w, b) = panels(columns)
        weightScales.withUnsafeBufferPointer { ws in
            cnx_qgemm_fused_u8(
                Int64(rows), Int64(w), Int64(k), a, Int64(lda), b, columnSums + j0, inputZero, inputScale,
                ws.baseAddress! + j0, bias.map { $0 + j0 }, act, next.inputScale, next.inputZero, out + j0, Int64(ldo))
        }
    }

    /// The first column, the width and the packed panels of a column range (cnx_qgemm.h: panel p,
    /// columns 16p..16p+15, is ceil(k / 4) groups of 64 bytes).
    private func panels(_ columns: Range<Int>?) -> (Int, Int, UnsafeRawPointer) {
        guard let columns else { return (0, n, UnsafeRawPointer(packed)) }
        precondition(columns.lowerBound % Int(CNX_QGEMM_PANEL) == 0 && columns.upperBound <= n, "column range \(columns) of \(n)")
        let panelBytes = (k + 3) / 4 * 64
        return (columns.lowerBound, columns.count, UnsafeRawPointer(packed + columns.lowerBound / Int(CNX_QGEMM_PANEL) * panelBytes))
    }
}

/// A GEMM layer in either precision, prepared once at load.
enum LayerWeights {
    case float(PackedMatrix)
    case int8(PackedQMatrix)
    /// bfloat16 or float16 weights (HalfLayers.swift).
    case half(PackedHalfMatrix)

    /// Packs `linear` for its precision's kernels.
    init(_ linear: Linear) throws {
        switch linear.precision {
        case .float32: self = .float(PackedMatrix(linear.weight.tensor))
        case .bfloat16, .float16: self = .half(try PackedHalfMatrix(linear.weight.tensor, name: linear.weight.name))
        case .int8(let q): self = .int8(try PackedQMatrix(weight: linear.weight.tensor, q))
        }
    }

    var k: Int {
        switch self {
        case .float(let m): return m.k;
        case .int8(let q): return q.k;
        case .half(let h): return h.k
        }
    }
    /// What the layer's input must be multiplied by, per channel, before it is applied (int8
    /// layers with equalized input channels), or nil.
    var inputMultipliers: [Float]? { if case .int8(let q) = self { return q.inverseChannelScales } else { return nil } }
    var n: Int {
        switch self {
        case .float(let m): return m.n;
        case .int8(let q): return q.n;
        case .half(let h): return h.n
        }
    }

    /// out = residual + act(x · W + bias) from float input rows (act a CNX_ACT_* code); an int8
    /// layer quantizes the rows into `codes` first (rows * k bytes).
    func apply(
        _ x: UnsafeMutablePointer<Float>, rows: Int, lda: Int, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into out: UnsafeMutablePointer<Float>, ldo: Int,
        codes: UnsafeMutablePointer<UInt8>
    ) {
        switch self {
        case .float(let m):
            m.multiply(x, rows: rows, lda: lda, bias: bias, act: act, residual: residual, ldr: ldr, into: out, ldc: ldo)
        case .half(let h):
            h.multiply(x, rows: rows, lda: lda, bias: bias, act: act, residual: residual, ldr: ldr, into: out, ldc: ldo)
        case .int8(let q):
            for r in 0..<rows { q.quantize(x + r * lda, count: q.k, into: codes + r * q.k) }
            q.multiply(codes, rows: rows, lda: q.k, bias: bias, act: act, residual: residual, ldr: ldr, into: out, ldo: ldo)
        }
    }
}
