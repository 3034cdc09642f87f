import CONNX
import CNXGraph
import Foundation

/// Keeps a protobuf-c message alive for the tensors that borrow its bytes.
final class UnpackedModel {
    let proto: UnsafeMutablePointer<Onnx__ModelProto>
    init(_ proto: UnsafeMutablePointer<Onnx__ModelProto>) { self.proto = proto }
    deinit { onnx__model_proto__free_unpacked(proto, nil) }
}

/// Reads an ONNX model file (and the external-data files beside it) into a `Graph`.
///
/// Initializers are read from `raw_data`, from the typed fields, or from external data, which is
/// memory-mapped, not copied; float16 and int32 tensors are widened to float32 and int64, the two
/// element types the rest of the project computes with. Constant nodes become initializers.
public enum ONNXReader {
    /// Loads `path`; every error names the file, and the node, tensor or byte offset where there is one.
    public static func load(path: String) throws -> Graph {
        do {
            return try Loader(path: path).load()
        } catch let error as CNXError {
            throw error.inFile(path).escapingControlCharacters
        }
    }
}

private func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
    guard let p else { return "" }
    return String(cString: p)
}

private final class Loader {
    let path: String
    let directory: URL
    var externalFiles: [String: MappedFile] = [:]
    var owner: UnpackedModel?
    var file: MappedFile?
    /// Where each initializer's raw_data lies in the model file (see InitializerStripper).
    var rawRanges: [Range<Int>?] = []

    init(path: String) {
        self.path = path
        directory = URL(fileURLWithPath: path).deletingLastPathComponent()
    }

    func load() throws -> Graph {
        let file = try MappedFile(path: path)
        guard file.count > 0 else { throw CNXError("empty file: not an ONNX model") }
        try file.withUnsafeBytes { try ProtoWireChecker(bytes: $0).check() }
        self.file = file
        let (stripped, ranges) = file.withUnsafeBytes { InitializerStripper(bytes: $0).strip() }
        rawRanges = ranges
        let unpacked = stripped.withUnsafeBufferPointer { onnx__model_proto__unpack(nil, $0.count, $0.baseAddress) }
        guard let proto = unpacked else {
            throw CNXError("not a valid ONNX protobuf: protobuf-c could not parse the \(file.count) bytes")
        }
        let owner = UnpackedModel(proto)
        self.owner = owner
        let model = proto.pointee

        var opsets: [String: Int] = [:]
        for i in 0..<model.n_opset_import {
            guard let op = model.opset_import[i] else { continue }
            let domain = string(op.pointee.domain)
            opsets[domain.isEmpty ? "ai.onnx" : domain] = Int(op.pointee.version)
        }
        guard let graphProto = model.graph else { throw CNXError("the model has no graph (ModelProto field 7)") }
        let g = graphProto.pointee

        var initializers: [String: Tensor] = [:]
        for i in 0..<g.n_initializer {
            guard let t = g.initializer[i] else { continue }
            let name = string(t.pointee.name)
            let raw = i < rawRanges.count ? rawRanges[i] : nil
            initializers[name] = try tensor(t, what: "initializer '\(name)'", raw: raw)
        }

        var nodes: [Node] = []
        var unsupported: [String: [String]] = [:]
        var unsupportedOrder: [String] = []
        for i in 0..<g.n_node {
            guard let np = g.node[i] else { continue }
            let n = np.pointee
            let opType = string(n.op_type)
            let domain = string(n.domain)
            let name = n.name.map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "#\(i)"
            let inputs = (0..<n.n_input).map { string(n.input[$0]) }
            let outputs = (0..<n.n_output).map { string(n.output[$0]) }
            guard domain.isEmpty || domain == "ai.onnx", let op = OpType(rawValue: opType) else {
                let key = domain.isEmpty || domain == "ai.onnx" ? opType : "\(domain).\(opType)"
                if unsupported[key] == nil { unsupportedOrder.append(key) }
                unsupported[key, default: []].append(name)
                continue
            }
            var attributes: [String: Attribute] = [:]
            for a in 0..<n.n_attribute {
                guard let ap = n.attribute[a] else { continue }
                let attrName = string(ap.pointee.name)
                attributes[attrName] = try attribute(ap.pointee, what: "attribute '\(attrName)' of \(opType) node '\(name)'")
            }
            if op == .constant {
                guard outputs.count == 1 else { throw CNXError("Constant node '\(name)' must have one output") }
                initializers[outputs[0]] = try constantValue(attributes, node: name)
                continue
            }
            nodes.append(Node(name: name, op: op, inputs: inputs, outputs: outputs, attributes: attributes))
        }
        if !unsupported.isEmpty {
            let list = unsupportedOrder.map { op -> String in
                let names = unsupported[op]!
                let shown = names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", … (\(names.count) in all)" : "")
                return "\(op) (\(shown))"
            }
            throw CNXError("unsupported operators: " + list.joined(separator: "; "))
        }

        var inputs: [ValueInfo] = []
        for i in 0..<g.n_input {
            guard let v = g.input[i] else { continue }
            let info = try valueInfo(v.pointee)
            if initializers[info.name] == nil { inputs.append(info) }
        }
        var outputs: [ValueInfo] = []
        for i in 0..<g.n_output {
            guard let v = g.output[i] else { continue }
            outputs.append(try valueInfo(v.pointee))
        }

        var metadata: [String: String] = [
            "producer": string(model.producer_name),
            "producer_version": string(model.producer_version),
            "ir_version": String(model.ir_version),
            "source": URL(fileURLWithPath: path).lastPathComponent,
            "format": "onnx",
        ]
        if let v = opsets["ai.onnx"] { metadata["opset"] = String(v) }
        if !externalFiles.isEmpty {
            metadata["external_data"] = externalFiles.keys.sorted().joined(separator: ", ")
        }
        let graph = Graph(inputs: inputs, outputs: outputs, nodes: nodes, initializers: initializers, metadata: metadata)
        try Verifier.verify(graph)
        return graph
    }

    func valueInfo(_ v: Onnx__ValueInfoProto) throws -> ValueInfo {
        let name = string(v.name)
        guard let type = v.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
            let tt = type.pointee.tensor_type
        else {
            throw CNXError("value '\(name)' is not a tensor")
        }
        let elem = tt.pointee.elem_type
        guard let dtype = DType(rawValue: elem) else {
            throw CNXError("value '\(name)' has unsupported element type \(elem)")
        }
        var shape: [Dim]?
        if let sp = tt.pointee.shape {
            var dims: [Dim] = []
            for d in 0..<sp.pointee.n_dim {
                guard let dp = sp.pointee.dim[d] else { continue }
                switch dp.pointee.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE:
                    let value = dp.pointee.dim_value
                    guard value >= 0 else { throw CNXError("value '\(name)' has negative dimension \(value)") }
                    dims.append(.fixed(Int(value)))
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                    dims.append(.symbol(string(dp.pointee.dim_param)))
                default:
                    dims.append(.unknown)
                }
            }
            shape = dims
        }
        return ValueInfo(name: name, dtype: dtype, shape: shape)
    }

    func attribute(_ a: Onnx__AttributeProto, what: String) throws -> Attribute {
        switch a.type {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return .float(a.f)
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
            return .int(Int(a.i))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
            let bytes = a.s.len > 0 ? Array(UnsafeBufferPointer(start: a.s.data, count: a.s.len)) : []
            return .string(String(decoding: bytes, as: UTF8.self))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
            return .floats(Array(UnsafeBufferPointer(start: a.floats, count: a.n_floats)))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
            return .ints(UnsafeBufferPointer(start: a.ints, count: a.n_ints).map { Int($0) })
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
            guard let t = a.t else { throw CNXError("\(what) has no tensor") }
            return .tensor(try tensor(t, what: what))
        default:
            throw CNXError("\(what) has unsupported attribute type \(a.type.rawValue)")
        }
    }

    func constantValue(_ attributes: [String: Attribute], node: String) throws -> Tensor {
        switch attributes.first(where: { $0.key.hasPrefix("value") || $0.key == "sparse_value" }) {
        case (_, .tensor(let t))?: return t
        case ("value_float", .float(let f))?: return Tensor(floats: [f], shape: [])
        case ("value_floats", .floats(let f))?: return Tensor(floats: f, shape: [f.count])
        case ("value_int", .int(let i))?: return Tensor(int64s: [Int64(i)], shape: [])
        case ("value_ints", .ints(let i))?: return Tensor(int64s: i.map(Int64.init), shape: [i.count])
        default: throw CNXError("Constant node '\(node)' has no value this reader understands")
        }
    }

    /// Converts a TensorProto, checking every length against the shape before touching data.
    func tensor(_ tp: UnsafeMutablePointer<Onnx__TensorProto>, what: String, raw: Range<Int>? = nil) throws -> Tensor {
        let t = tp.pointee
        var shape: [Int] = []
        for i in 0..<t.n_dims {
            let d = t.dims[i]
            guard d >= 0, d <= Int64(Int.max) else { throw CNXError("\(what) has invalid dimension \(d)") }
            shape.append(Int(d))
        }
        guard let count = checkedElementCount(shape) else {
            throw CNXError("\(what): shape \(shape) overflows")
        }
        guard let dtype = DType(rawValue: t.data_type) else {
            throw CNXError("\(what) has unsupported data type \(t.data_type)")
        }
        let (expectedBytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw CNXError("\(what): shape \(shape) overflows") }

        if t.has_data_location != 0 && t.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            return tensorFromBytes(dtype: dtype, shape: shape, bytes: try externalBytes(t, expectedBytes: expectedBytes, what: what))
        }
        if let raw, let file {
            guard raw.count == expectedBytes else {
                throw CNXError(
                    "\(what): raw_data at byte \(raw.lowerBound) holds \(raw.count) bytes, shape \(shape) of \(dtype.name) needs \(expectedBytes)"
                )
            }
            return tensorFromBytes(dtype: dtype, shape: shape, bytes: file.storage(offset: raw.lowerBound, byteCount: raw.count))
        }
        if t.has_raw_data != 0 {
            guard t.raw_data.len == expectedBytes else {
                throw CNXError("\(what): raw_data holds \(t.raw_data.len) bytes, shape \(shape) of \(dtype.name) needs \(expectedBytes)")
            }
            guard let pointer = UnsafeRawPointer(t.raw_data.data), let owner else {
                return tensorFromBytes(dtype: dtype, shape: shape, bytes: Storage(byteCount: 0))
            }
            return tensorFromBytes(dtype: dtype, shape: shape, bytes: Storage(borrowing: pointer, byteCount: expectedBytes, owner: owner))
        }
        // Typed fields.
        func mismatch(_ field: String, _ n: Int) -> CNXError {
            CNXError("\(what): \(field) holds \(n) values, shape \(shape) needs \(count)")
        }
        switch dtype {
        case .float32:
            guard t.n_float_data == count else { throw mismatch("float_data", t.n_float_data) }
            return Tensor(floats: Array(UnsafeBufferPointer(start: t.float_data, count: count)), shape: shape)
        case .float64:
            guard t.n_double_data == count else { throw mismatch("double_data", t.n_double_data) }
            return Tensor(floats: UnsafeBufferPointer(start: t.double_data, count: count).map { Float($0) }, shape: shape)
        case .int64:
            guard t.n_int64_data == count else { throw mismatch("int64_data", t.n_int64_data) }
            return Tensor(int64s: Array(UnsafeBufferPointer(start: t.int64_data, count: count)), shape: shape)
        case .int32, .int8, .uint8, .bool:
            guard t.n_int32_data == count else { throw mismatch("int32_data", t.n_int32_data) }
            return Tensor(int64s: UnsafeBufferPointer(start: t.int32_data, count: count).map { Int64($0) }, shape: shape)
        case .float16, .bfloat16:
            // 16-bit floats are stored as their bit patterns in int32_data.
            guard t.n_int32_data == count else { throw mismatch("int32_data", t.n_int32_data) }
            let bits = UnsafeBufferPointer(start: t.int32_data, count: count).map { UInt16(truncatingIfNeeded: $0) }
            return Tensor(floats: bits.map { halfToFloat($0, bfloat: dtype == .bfloat16) }, shape: shape)
        }
    }

    /// The bytes of an externally stored tensor, inside a mapped file beside the model.
    func externalBytes(_ t: Onnx__TensorProto, expectedBytes: Int, what: String) throws -> Storage {
        var location = "", offset = 0, length: Int?
        for i in 0..<t.n_external_data {
            guard let e = t.external_data[i] else { continue }
            let key = string(e.pointee.key), value = string(e.pointee.value)
            switch key {
            case "location": location = value
            case "offset":
                guard let v = Int(value), v >= 0 else { throw CNXError("\(what): invalid external-data offset '\(value)'") }
                offset = v
            case "length":
                guard let v = Int(value), v >= 0 else { throw CNXError("\(what): invalid external-data length '\(value)'") }
                length = v
            default: break
            }
        }
        guard !location.isEmpty else { throw CNXError("\(what): external data without a location") }
        let components = location.split(separator: "/")
        guard !location.hasPrefix("/"), !components.contains("..") else {
            throw CNXError("\(what): external-data location '\(location)' leaves the model's folder; refused")
        }
        let dataPath = directory.appendingPathComponent(location).path
        let file: MappedFile
        if let cached = externalFiles[location] {
            file = cached
        } else {
            guard FileManager.default.fileExists(atPath: dataPath) else {
                throw CNXError("\(what): external-data file not found: \(dataPath)")
            }
            file = try MappedFile(path: dataPath)
            externalFiles[location] = file
        }
        let size = length ?? expectedBytes
        guard size == expectedBytes else {
            throw CNXError("\(what): external data length \(size) does not match the \(expectedBytes) bytes its shape needs")
        }
        guard offset <= file.count, size <= file.count - offset else {
            throw CNXError("\(dataPath): \(what) claims bytes \(offset)..<\(offset + size), past the end of the \(file.count)-byte file")
        }
        return file.storage(offset: offset, byteCount: size)
    }
}

/// IEEE half (or bfloat16) bits to float.
func halfToFloat(_ bits: UInt16, bfloat: Bool) -> Float {
    if bfloat { return Float(bitPattern: UInt32(bits) << 16) }
    return Float(Float16(bitPattern: bits))
}
