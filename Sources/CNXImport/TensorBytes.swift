import CNXGraph

/// A float32 or int64 tensor from bytes of any element type the readers accept: a view of the
/// bytes when they already have that type and alignment, else a converted copy (after which a
/// mapped source's pages are given back).
func tensorFromBytes(dtype: DType, shape: [Int], bytes: UnsafeRawPointer, owner: AnyObject, mapped: Bool) -> Tensor {
    let count = shape.reduce(1, *)
    let aligned = Int(bitPattern: bytes) % dtype.size == 0
    defer {
        // A converted tensor no longer needs the source pages.
        if mapped && !(aligned && (dtype == .float32 || dtype == .int64)) {
            Storage(borrowing: bytes, byteCount: count * dtype.size, owner: owner, mapped: true).dropPages()
        }
    }
    switch dtype {
    case .float32, .int64:
        if aligned {
            return Tensor(dtype: dtype, shape: shape, storage: Storage(borrowing: bytes, byteCount: count * dtype.size, owner: owner, mapped: mapped))
        }
        let t = Tensor(zeros: dtype, shape: shape)
        t.storage.bytes.copyMemory(from: bytes, byteCount: count * dtype.size)
        return t
    case .float16, .bfloat16:
        let out = Tensor(zeros: .float32, shape: shape)
        let dst = out.floatPointer
        if dtype == .bfloat16 {
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
        } else {
            for i in 0..<count { dst[i] = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        }
        return out
    case .float64:
        let out = Tensor(zeros: .float32, shape: shape)
        for i in 0..<count { out.floatPointer[i] = Float(bytes.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        return out
    case .int32:
        let out = Tensor(zeros: .int64, shape: shape)
        for i in 0..<count { out.int64Pointer[i] = Int64(bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        return out
    case .int8:
        let out = Tensor(zeros: .int64, shape: shape)
        for i in 0..<count { out.int64Pointer[i] = Int64(bytes.load(fromByteOffset: i, as: Int8.self)) }
        return out
    case .uint8, .bool:
        let out = Tensor(zeros: .int64, shape: shape)
        for i in 0..<count { out.int64Pointer[i] = Int64(bytes.load(fromByteOffset: i, as: UInt8.self)) }
        return out
    }
}
