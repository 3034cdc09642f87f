/// Scoped access to a tensor's elements: the pointer lives only inside the closure, during which
/// the tensor (and so its storage) is kept alive; it must not be kept or returned. The mutable
/// forms never write through a read-only view (a mapped file): `Storage` copies it first.
extension Tensor {
    /// The float32 elements, read-only.
    public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try elements(of: .float32, body)
    }

    /// The float32 elements, writable (a read-only view is copied first: see `Storage`).
    public func withUnsafeMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try mutableElements(of: .float32, body)
    }

    /// The int64 elements, read-only.
    public func withUnsafeInt64s<R>(_ body: (UnsafeBufferPointer<Int64>) throws -> R) rethrows -> R {
        try elements(of: .int64, body)
    }

    /// The int64 elements, writable.
    public func withUnsafeMutableInt64s<R>(_ body: (UnsafeMutableBufferPointer<Int64>) throws -> R) rethrows -> R {
        try mutableElements(of: .int64, body)
    }

    /// The elements as `T`, which must be the Swift type of `expected`, the tensor's element type.
    private func elements<T, R>(of expected: DType, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(dtype == expected && MemoryLayout<T>.size == dtype.size, "\(expected.name) access to a \(dtype.name) tensor")
        return try withUnsafeBytes { try body($0.assumingMemoryBound(to: T.self)) }
    }

    /// `elements`, writable.
    private func mutableElements<T, R>(of expected: DType, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(dtype == expected && MemoryLayout<T>.size == dtype.size, "\(expected.name) access to a \(dtype.name) tensor")
        return try withUnsafeMutableElementBytes { try body($0.assumingMemoryBound(to: T.self)) }
    }

    /// The raw bytes of the elements, read-only, whatever the element type.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let n = byteCount
        precondition(n <= storage.byteCount, "a \(dtype.name) \(shape) tensor over \(storage.byteCount) bytes")
        return try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
    }

    /// `withUnsafeBytes` (the name the kernels and the typed payloads use).
    public func withUnsafeElementBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }

    /// The raw bytes of the elements, writable (a read-only view is copied first: see `Storage`).
    public func withUnsafeMutableElementBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let n = byteCount
        precondition(n <= storage.byteCount, "a \(dtype.name) \(shape) tensor over \(storage.byteCount) bytes")
        return try storage.withUnsafeMutableBytes { try body(UnsafeMutableRawBufferPointer(rebasing: $0[..<n])) }
    }

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
