import CKernels
import CNXGraph

extension Tensor {
    /// A float32 copy of a bfloat16 or float16 tensor (exact); nil for other dtypes.
    public func widenedHalf() -> Tensor? {
        guard dtype == .bfloat16 || dtype == .float16 else { return nil }
        let out = Tensor(zeros: .float32, shape: shape)
        withUnsafeBytes { raw in
            let bits = raw.bindMemory(to: UInt16.self).baseAddress!
            out.withUnsafeMutableFloats { dst in
                if dtype == .bfloat16 {
                    cnx_f32_from_bf16_n(bits, Int64(count), dst.baseAddress!)
                } else {
                    cnx_f32_from_f16_n(bits, Int64(count), dst.baseAddress!)
                }
            }
        }
        return out
    }
}
