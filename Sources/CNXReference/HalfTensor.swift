import CKernels
import CNXGraph

extension Tensor {
    /// A float32 copy of a bfloat16 or float16 tensor (exact); nil for other dtypes.
    public func widenedHalf() -> Tensor? {
        guard dtype == .bfloat16 || dtype == .float16 else { return nil }
        let out = Tensor(zeros: .float32, shape: shape)
        let bits = storage.bytes.assumingMemoryBound(to: UInt16.self)
        if dtype == .bfloat16 { cnx_f32_from_bf16_n(bits, Int64(count), out.floatPointer) } else { cnx_f32_from_f16_n(bits, Int64(count), out.floatPointer) }
        return out
    }
}
