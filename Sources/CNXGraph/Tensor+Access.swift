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

extension Tensor {
    /// The int64 elements, writable, for the duration of `body`.
    public func withUnsafeMutableInt64s<R>(_ body: (UnsafeMutableBufferPointer<Int64>) throws -> R) rethrows -> R {
        precondition(dtype == .int64, "withUnsafeMutableInt64s on a \(dtype) tensor")
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.bytes.assumingMemoryBound(to: Int64.self), count: count))
        }
    }
}

extension Tensor {
    /// Copies `count` float32 elements of `source`, from its element `offset`, into this tensor
    /// at element `at` (both ranges checked).
    public func copyFloats(from source: Tensor, offset: Int = 0, count: Int, at: Int = 0) {
        precondition(offset >= 0 && offset + count <= source.count && at >= 0 && at + count <= self.count)
        guard count > 0 else { return }
        withUnsafeMutableFloats { dst in
            source.withUnsafeFloats { src in
                dst.baseAddress!.advanced(by: at).update(from: src.baseAddress!.advanced(by: offset), count: count)
            }
        }
    }

    /// The float32 elements in `range`, as an array.
    public func floats(_ range: Range<Int>) -> [Float] {
        withUnsafeFloats { Array($0[range]) }
    }
}
