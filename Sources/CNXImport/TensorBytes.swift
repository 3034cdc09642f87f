import CNXGraph

/// A float32 or int64 tensor from `bytes`, elements of any element type the readers accept: a
/// tensor over `bytes` themselves when they already have that type and alignment, else a
/// converted copy (after which a mapped source's pages are given back).
func tensorFromBytes(dtype: DType, shape: [Int], bytes: Storage) -> Tensor {
    if dtype == .float32 || dtype == .int64, bytes.withUnsafeBytes({ Int(bitPattern: $0.baseAddress) % dtype.size == 0 }) {
        return Tensor(dtype: dtype, shape: shape, storage: bytes)
    }
    // A converted tensor no longer needs the source pages.
    defer { bytes.dropPages() }
    return bytes.withUnsafeBytes { raw in
        switch dtype {
        case .float32, .int64:
            let t = Tensor(zeros: dtype, shape: shape)
            t.withUnsafeMutableElementBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix($0.count))) }
            return t
        case .bfloat16:
            return filled(.float32, shape) { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
        case .float16:
            return filled(.float32, shape) { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case .float64:
            return filled(.float32, shape) { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
        case .int32:
            return filled(.int64, shape) { Int64(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        case .int8:
            return filled(.int64, shape) { Int64(Int8(bitPattern: raw[$0])) }
        case .uint8, .bool:
            return filled(.int64, shape) { Int64(raw[$0]) }
        }
    }
}

/// A new tensor of `dtype` (float32 or int64, as `T`) whose element i is `value(i)`.
private func filled<T>(_ dtype: DType, _ shape: [Int], _ value: (Int) -> T) -> Tensor {
    let out = Tensor(zeros: dtype, shape: shape)
    precondition(dtype.size == MemoryLayout<T>.size)
    out.withUnsafeMutableElementBytes { raw in
        let p = raw.bindMemory(to: T.self)
        for i in p.indices { p[i] = value(i) }
    }
    return out
}
