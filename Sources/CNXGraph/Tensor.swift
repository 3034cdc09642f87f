/// A dense tensor: element type, shape and the bytes behind it (row-major).
public struct Tensor: @unchecked Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var storage: Storage
    /// For an integer tensor that stands for real values (an int8 weight): how (nil: plain values).
    public var quantization: Quantization?

    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.size }

    public init(dtype: DType, shape: [Int], storage: Storage) {
        precondition(storage.byteCount >= (checkedElementCount(shape) ?? Int.max) * dtype.size)
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor.
    public init(zeros dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
        storage = Storage(byteCount: shape.reduce(1, *) * dtype.size)
    }

    public init(floats: [Float], shape: [Int]) {
        precondition(floats.count == shape.reduce(1, *))
        self.init(zeros: .float32, shape: shape)
        fill(from: floats)
    }

    public init(int64s: [Int64], shape: [Int]) {
        precondition(int64s.count == shape.reduce(1, *))
        self.init(zeros: .int64, shape: shape)
        fill(from: int64s)
    }

    /// Copies the bytes of `values` to the start of the storage.
    private func fill<T>(from values: [T]) {
        values.withUnsafeBytes { source in storage.withUnsafeMutableBytes { $0.copyMemory(from: source) } }
    }

    public var floats: [Float] {
        withUnsafeFloats { Array($0) }
    }

    public var int64s: [Int64] {
        withUnsafeInt64s { Array($0) }
    }

    /// The same bytes seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var t = self
        t.shape = newShape
        return t
    }

    /// A copy into newly allocated memory.
    public func copy() -> Tensor {
        let t = Tensor(zeros: dtype, shape: shape)
        withUnsafeBytes { source in t.withUnsafeMutableElementBytes { $0.copyMemory(from: source) } }
        return t
    }
}
