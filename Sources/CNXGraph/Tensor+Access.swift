/// Scoped access to a tensor's elements: the pointer lives only inside the closure, during which
/// the tensor (and so its storage) is kept alive. Prefer these to `floatPointer`/`int64Pointer`,
/// which hand a pointer out of its owner's lifetime.
extension Tensor {
    /// The float32 elements, read-only.
    public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeFloats on a \(dtype.name) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.bytes.assumingMemoryBound(to: Float.self), count: count))
        }
    }

    /// The float32 elements, writable (a tensor this code allocated, never a borrowed mapping).
    public func withUnsafeMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeMutableFloats on a \(dtype.name) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.bytes.assumingMemoryBound(to: Float.self), count: count))
        }
    }

    /// The int64 elements, read-only.
    public func withUnsafeInt64s<R>(_ body: (UnsafeBufferPointer<Int64>) throws -> R) rethrows -> R {
        precondition(dtype == .int64, "withUnsafeInt64s on a \(dtype.name) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.bytes.assumingMemoryBound(to: Int64.self), count: count))
        }
    }

    /// The int64 elements, writable.
    public func withUnsafeMutableInt64s<R>(_ body: (UnsafeMutableBufferPointer<Int64>) throws -> R) rethrows -> R {
        precondition(dtype == .int64, "withUnsafeMutableInt64s on a \(dtype.name) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.bytes.assumingMemoryBound(to: Int64.self), count: count))
        }
    }

    /// The bytes of the elements, read-only, whatever the element type.
    public func withUnsafeElementBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(UnsafeRawBufferPointer(start: storage.bytes, count: byteCount)) }
    }

    /// The bytes of the elements, writable.
    public func withUnsafeMutableElementBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(UnsafeMutableRawBufferPointer(start: storage.bytes, count: byteCount)) }
    }
}
