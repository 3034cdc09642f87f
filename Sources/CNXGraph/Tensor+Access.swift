/// Scoped access to a tensor's elements: the pointer lives only inside the closure, during which
/// the storage is kept alive (the style guide's rule for unsafe pointers).
extension Tensor {
    /// The float32 elements, read-only, for the duration of `body`.
    public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeFloats on a \(dtype) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.bytes.assumingMemoryBound(to: Float.self), count: count))
        }
    }

    /// The float32 elements, writable, for the duration of `body`. The tensor must own its
    /// memory (a tensor made here, not a view of a mapped file).
    public func withUnsafeMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeMutableFloats on a \(dtype) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.bytes.assumingMemoryBound(to: Float.self), count: count))
        }
    }

    /// The raw bytes, read-only, for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(UnsafeRawBufferPointer(start: storage.bytes, count: byteCount)) }
    }
}
