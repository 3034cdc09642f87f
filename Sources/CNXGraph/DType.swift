/// Element types of tensors. Raw values are those of ONNX's TensorProto.DataType, so that a
/// number read from a file means the same thing everywhere in the project.
public enum DType: Int32, CaseIterable, Sendable {
    case float32 = 1
    case uint8 = 2
    case int8 = 3
    case int32 = 6
    case int64 = 7
    case bool = 9
    case float16 = 10
    case float64 = 11
    case bfloat16 = 16

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .float16, .bfloat16: return 2
        case .float32, .int32: return 4
        case .int64, .float64: return 8
        }
    }

    public var name: String {
        switch self {
        case .float32: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int32: return "int32"
        case .int64: return "int64"
        case .bool: return "bool"
        case .float16: return "float16"
        case .float64: return "float64"
        case .bfloat16: return "bfloat16"
        }
    }
}

/// Element count of a shape, or nil when a dimension is negative or the product overflows Int.
public func checkedElementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, overflow) = count.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        count = p
    }
    return count
}
