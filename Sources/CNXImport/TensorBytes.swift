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
            return Tensor(
                dtype: dtype, shape: shape, storage: Storage(borrowing: bytes, byteCount: count * dtype.size, owner: owner, mapped: mapped))
        }
        let t = Tensor(zeros: dtype, shape: shape)
        t.storage.bytes.copyMemory(from: bytes, byteCount: count * dtype.size)
        return t
    case .bfloat16:
        return filled(.float32, shape) { Float(bitPattern: UInt32(bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
    case .float16:
        return filled(.float32, shape) { Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
    case .float64:
        return filled(.float32, shape) { Float(bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
    case .int32:
        return filled(.int64, shape) { Int64(bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
    case .int8:
        return filled(.int64, shape) { Int64(bytes.load(fromByteOffset: $0, as: Int8.self)) }
    case .uint8, .bool:
        return filled(.int64, shape) { Int64(bytes.load(fromByteOffset: $0, as: UInt8.self)) }
    }
}

/// A new tensor of `dtype` (float32 or int64, as `T`) whose element i is `value(i)`.
private func filled<T>(_ dtype: DType, _ shape: [Int], _ value: (Int) -> T) -> Tensor {
    let out = Tensor(zeros: dtype, shape: shape)
    precondition(dtype.size == MemoryLayout<T>.size)
    withExtendedLifetime(out.storage) {
        let p = UnsafeMutableRawBufferPointer(start: out.storage.bytes, count: out.byteCount).bindMemory(to: T.self)
        for i in p.indices { p[i] = value(i) }
    }
    return out
}
