// The C API (Sources/CNXRuntimeC/include/cnx.h), implemented over the Swift `Model`. Every entry
// point checks its pointers and sizes before touching them and turns every thrown error into a
// status and a message (cnx_last_error), so bad input from C never traps. No Swift type crosses
// the boundary: a cnx_model is an opaque pointer to a retained `Handle`.
import CNXFormat
import CNXGraph
import CNXRuntime
import CNXRuntimeC
import Foundation

/// What a cnx_model points at: the model, the strings handed out to C (allocated once, freed
/// with the handle) and a pool of workspaces so that runs reuse their scratch memory.
final class Handle: @unchecked Sendable {
    let model: Model
    let inputNames: [UnsafeMutablePointer<CChar>]
    let outputNames: [UnsafeMutablePointer<CChar>]
    let classNames: [UnsafeMutablePointer<CChar>]
    let metadataText: [String: UnsafeMutablePointer<CChar>]
    let metadataJSON: UnsafeMutablePointer<CChar>
    private var workspaces: [Model.Workspace] = []
    private let lock = NSLock()

    init(model: Model) {
        self.model = model
        inputNames = model.graph.inputs.map { strdup($0.name)! }
        outputNames = model.graph.outputs.map { strdup($0.name)! }
        classNames = (model.metadata[MetadataKey.classNames]?.stringsValue ?? []).map { strdup($0)! }
        var text: [String: UnsafeMutablePointer<CChar>] = [:]
        for (key, value) in model.metadata {
            if case .string(let s) = value { text[key] = strdup(s)! } else { text[key] = strdup(json(jsonObject(value)))! }
        }
        metadataText = text
        metadataJSON = strdup(json(model.metadata.mapValues(jsonObject)))!
    }

    deinit {
        for p in inputNames + outputNames + classNames { free(p) }
        for p in metadataText.values { free(p) }
        free(metadataJSON)
    }

    /// A workspace no other run is using; give it back with `release`.
    func takeWorkspace() -> Model.Workspace {
        lock.lock()
        defer { lock.unlock() }
        return workspaces.popLast() ?? model.makeWorkspace()
    }

    func release(_ ws: Model.Workspace) {
        lock.lock()
        workspaces.append(ws)
        lock.unlock()
    }
}

/// CNX_MAX_RANK as a Swift integer.
let maxRank = Int(CNX_MAX_RANK)

// MARK: - Errors

/// A failure on its way to C: the status and the message.
struct Failure: Error {
    let status: cnx_status
    let message: String
    init(_ status: cnx_status, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// Runs body, turning a Failure or any other error into a status and cnx_last_error.
func guarded(_ function: String, _ body: () throws -> Void) -> cnx_status {
    do {
        try body()
        return CNX_OK
    } catch let f as Failure {
        return cnx_capi_fail(f.status, "\(function): \(f.message)")
    } catch let e as CNXError {
        return cnx_capi_fail(CNX_ERROR_RUNTIME, "\(function): \(e.escapingControlCharacters.message)")
    } catch {
        return cnx_capi_fail(CNX_ERROR_RUNTIME, "\(function): \(error)")
    }
}

func handle(_ p: OpaquePointer?) throws -> Handle {
    guard let p else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "model is NULL") }
    return Unmanaged<Handle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func required<T>(_ p: UnsafeMutablePointer<T>?, _ name: String) throws -> UnsafeMutablePointer<T> {
    guard let p else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "\(name) is NULL") }
    return p
}

/// A getter's checks, in the order every getter makes them (the model, then the out-pointer
/// `name`), then what `value` gives for the model written through the out-pointer.
func get<T>(
    _ function: String, _ model: OpaquePointer?, _ out: UnsafeMutablePointer<T>?, _ name: String,
    _ value: (Handle) throws -> T
) -> cnx_status {
    guarded(function) {
        let h = try handle(model)
        let p = try required(out, name)
        p.pointee = try value(h)
    }
}

// MARK: - JSON for metadata values

/// A metadata value as a JSON-ready Foundation value: floats as the decimals they were written
/// as (0.9, not 0.899999976), non-finite numbers as null.
func jsonObject(_ v: MetadataValue) -> Any {
    func number(_ f: Float) -> Any { f.isFinite ? (Double(String(f)) ?? Double(f)) as Any : NSNull() }
    func number(_ d: Double) -> Any { d.isFinite ? d as Any : NSNull() }
    switch v {
    case .string(let s): return s
    case .int(let i): return i
    case .float(let f): return number(f)
    case .double(let d): return number(d)
    case .bool(let b): return b
    case .ints(let a): return a
    case .floats(let a): return a.map { number($0) }
    case .strings(let a): return a
    }
}

func json(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed, .sortedKeys]) else { return "null" }
    return String(decoding: data, as: UTF8.self)
}

// MARK: - Opening

@_cdecl("cnx_model_open")
public func cnxModelOpen(
    _ path: UnsafePointer<CChar>?, _ threads: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> cnx_status {
    guarded("cnx_model_open") {
        guard let path else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "path is NULL") }
        let out = try required(out, "model")
        guard threads >= 0 else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "threads is \(threads); give 0 (one per core) or more") }
        let file = String(cString: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
            throw Failure(CNX_ERROR_FILE, "\(file): no such file")
        }
        guard !isDirectory.boolValue else { throw Failure(CNX_ERROR_FILE, "\(file): is a folder, not a .cnx file") }
        guard access(file, R_OK) == 0 else { throw Failure(CNX_ERROR_FILE, "\(file): cannot be read (permission denied)") }
        let model: Model
        do {
            model = try Model(path: file, threads: threads == 0 ? nil : Int(threads))
        } catch let e as CNXError {
            throw Failure(CNX_ERROR_FORMAT, e.inFile(file).escapingControlCharacters.message)
        }
        out.pointee = OpaquePointer(Unmanaged.passRetained(Handle(model: model)).toOpaque())
    }
}

@_cdecl("cnx_model_close")
public func cnxModelClose(_ model: OpaquePointer?) {
    guard let model else { return }
    Unmanaged<Handle>.fromOpaque(UnsafeRawPointer(model)).release()
}

@_cdecl("cnx_model_threads")
public func cnxModelThreads(_ model: OpaquePointer?, _ threads: UnsafeMutablePointer<Int32>?) -> cnx_status {
    get("cnx_model_threads", model, threads, "threads") { Int32($0.model.threads) }
}

// MARK: - Inputs and outputs

@_cdecl("cnx_model_input_count")
public func cnxModelInputCount(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int64>?) -> cnx_status {
    get("cnx_model_input_count", model, count, "count") { Int64($0.inputNames.count) }
}

@_cdecl("cnx_model_output_count")
public func cnxModelOutputCount(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int64>?) -> cnx_status {
    get("cnx_model_output_count", model, count, "count") { Int64($0.outputNames.count) }
}

func pick<T>(_ items: [T], _ index: Int64, _ what: String) throws -> T {
    guard index >= 0, index < items.count else {
        throw Failure(CNX_ERROR_INVALID_ARGUMENT, "\(what) index \(index) is out of range (the model has \(items.count))")
    }
    return items[Int(index)]
}

@_cdecl("cnx_model_input_name")
public func cnxModelInputName(
    _ model: OpaquePointer?, _ index: Int64,
    _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> cnx_status {
    get("cnx_model_input_name", model, name, "name") { UnsafePointer(try pick($0.inputNames, index, "input")) }
}

@_cdecl("cnx_model_output_name")
public func cnxModelOutputName(
    _ model: OpaquePointer?, _ index: Int64,
    _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> cnx_status {
    get("cnx_model_output_name", model, name, "name") { UnsafePointer(try pick($0.outputNames, index, "output")) }
}

/// Writes a declared shape (-1 for open dimensions, rank -1 when undeclared).
func writeShape(
    _ shape: [Dim]?, _ dims: UnsafeMutablePointer<Int64>?, _ capacity: Int64,
    _ rank: UnsafeMutablePointer<Int64>?
) throws {
    let rank = try required(rank, "rank")
    guard let shape else {
        rank.pointee = -1
        return
    }
    guard capacity >= shape.count else {
        rank.pointee = Int64(shape.count)
        throw Failure(CNX_ERROR_BUFFER_TOO_SMALL, "the shape has \(shape.count) dimensions, dims holds \(capacity)")
    }
    if !shape.isEmpty {
        let dims = try required(dims, "dims")
        for (i, d) in shape.enumerated() {
            if case .fixed(let v) = d { dims[i] = Int64(v) } else { dims[i] = -1 }
        }
    }
    rank.pointee = Int64(shape.count)
}

/// The declared shape of the model's input or output `index` (`side`), through `writeShape`.
func shapeOf(
    _ function: String, _ model: OpaquePointer?, _ side: KeyPath<Graph, [ValueInfo]>, _ what: String, _ index: Int64,
    _ dims: UnsafeMutablePointer<Int64>?, _ capacity: Int64, _ rank: UnsafeMutablePointer<Int64>?
) -> cnx_status {
    guarded(function) {
        let h = try handle(model)
        try writeShape(try pick(h.model.graph[keyPath: side], index, what).shape, dims, capacity, rank)
    }
}

@_cdecl("cnx_model_input_shape")
public func cnxModelInputShape(
    _ model: OpaquePointer?, _ index: Int64, _ dims: UnsafeMutablePointer<Int64>?,
    _ capacity: Int64, _ rank: UnsafeMutablePointer<Int64>?
) -> cnx_status {
    shapeOf("cnx_model_input_shape", model, \.inputs, "input", index, dims, capacity, rank)
}

@_cdecl("cnx_model_output_shape")
public func cnxModelOutputShape(
    _ model: OpaquePointer?, _ index: Int64, _ dims: UnsafeMutablePointer<Int64>?,
    _ capacity: Int64, _ rank: UnsafeMutablePointer<Int64>?
) -> cnx_status {
    shapeOf("cnx_model_output_shape", model, \.outputs, "output", index, dims, capacity, rank)
}

// MARK: - Running

func run(
    _ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ inputCount: Int64,
    _ inputShape: UnsafePointer<Int64>?, _ inputRank: Int64, _ outputs: UnsafeMutablePointer<cnx_output>?,
    _ outputCount: Int64
) throws {
    let h = try handle(model)
    guard let input else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "input is NULL") }
    guard let inputShape else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "input_shape is NULL") }
    guard let outputs else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "outputs is NULL") }
    guard inputRank >= 1, inputRank <= maxRank else {
        throw Failure(CNX_ERROR_SHAPE, "input_rank is \(inputRank); give 1 to \(maxRank) dimensions")
    }
    guard h.inputNames.count == 1, let inputName = h.model.graph.inputs.first?.name else {
        throw Failure(CNX_ERROR_INVALID_ARGUMENT, "the model has \(h.inputNames.count) inputs; this call feeds one")
    }
    guard outputCount == h.outputNames.count else {
        throw Failure(CNX_ERROR_INVALID_ARGUMENT, "output_count is \(outputCount), the model has \(h.outputNames.count) outputs")
    }
    var shape: [Int] = []
    var elements = 1
    for i in 0..<Int(inputRank) {
        let d = inputShape[i]
        guard d >= 1, d <= Int32.max else { throw Failure(CNX_ERROR_SHAPE, "input dimension \(i) is \(d)") }
        let (product, overflow) = elements.multipliedReportingOverflow(by: Int(d))
        guard !overflow else {
            throw Failure(
                CNX_ERROR_SHAPE, "the input shape \(Array(UnsafeBufferPointer(start: inputShape, count: Int(inputRank)))) is too large")
        }
        shape.append(Int(d))
        elements = product
    }
    guard inputCount == elements else {
        throw Failure(CNX_ERROR_SHAPE, "input_count is \(inputCount), but the shape \(shape) holds \(elements) floats")
    }
    for i in 0..<Int(outputCount) where outputs[i].capacity > 0 && outputs[i].data == nil {
        throw Failure(CNX_ERROR_INVALID_ARGUMENT, "outputs[\(i)].data is NULL")
    }
    let x = Tensor(zeros: .float32, shape: shape)
    x.withUnsafeMutableFloats { $0.baseAddress!.update(from: input, count: elements) }
    let ws = h.takeWorkspace()
    defer { h.release(ws) }
    let results: [String: Tensor]
    do {
        results = try h.model.predictAll([inputName: x], workspace: ws)
    } catch let e as CNXError {
        // The model checks the input (rank, fixed dimensions, multiples of 32) before it runs.
        throw Failure(CNX_ERROR_SHAPE, e.escapingControlCharacters.message)
    }
    // Shapes first, so a too-small buffer reports every needed size.
    var tooSmall: [String] = []
    var tensors: [Tensor] = []
    for i in 0..<Int(outputCount) {
        guard let y = results[h.model.graph.outputs[i].name], y.dtype == .float32 else {
            throw Failure(CNX_ERROR_RUNTIME, "output '\(h.model.graph.outputs[i].name)' was not computed as float32")
        }
        guard y.shape.count <= maxRank else {
            throw Failure(CNX_ERROR_RUNTIME, "output '\(h.model.graph.outputs[i].name)' has \(y.shape.count) dimensions")
        }
        withUnsafeMutableBytes(of: &outputs[i].shape) { raw in
            let dims = raw.bindMemory(to: Int64.self)
            for (j, d) in y.shape.enumerated() { dims[j] = Int64(d) }
        }
        outputs[i].rank = Int64(y.shape.count)
        if outputs[i].capacity < y.count {
            tooSmall.append(
                "outputs[\(i)] ('\(h.model.graph.outputs[i].name)', shape \(y.shape)) needs \(y.count) floats, capacity is \(outputs[i].capacity)"
            )
        }
        tensors.append(y)
    }
    guard tooSmall.isEmpty else { throw Failure(CNX_ERROR_BUFFER_TOO_SMALL, tooSmall.joined(separator: "; ")) }
    for (i, y) in tensors.enumerated() where y.count > 0 {
        y.withUnsafeFloats { outputs[i].data!.update(from: $0.baseAddress!, count: y.count) }
    }
}

@_cdecl("cnx_model_run")
public func cnxModelRun(
    _ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ inputCount: Int64,
    _ inputShape: UnsafePointer<Int64>?, _ inputRank: Int64,
    _ outputs: UnsafeMutablePointer<cnx_output>?, _ outputCount: Int64
) -> cnx_status {
    guarded("cnx_model_run") { try run(model, input, inputCount, inputShape, inputRank, outputs, outputCount) }
}

@_cdecl("cnx_model_run1")
public func cnxModelRun1(
    _ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ inputCount: Int64,
    _ inputShape: UnsafePointer<Int64>?, _ inputRank: Int64, _ output: UnsafeMutablePointer<Float>?,
    _ outputCapacity: Int64, _ outputShape: UnsafeMutablePointer<Int64>?,
    _ outputRank: UnsafeMutablePointer<Int64>?
) -> cnx_status {
    guarded("cnx_model_run1") {
        guard output != nil || outputCapacity == 0 else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "output is NULL") }
        guard outputCapacity >= 0 else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "output_capacity is \(outputCapacity)") }
        var out = cnx_output()
        out.data = output
        out.capacity = outputCapacity
        defer {
            // The shape is reported on success and when the buffer is too small.
            if let outputRank { outputRank.pointee = out.rank }
            if let outputShape {
                withUnsafeBytes(of: out.shape) { raw in
                    let dims = raw.bindMemory(to: Int64.self)
                    for j in 0..<max(0, min(Int(out.rank), maxRank)) { outputShape[j] = dims[j] }
                }
            }
        }
        try run(model, input, inputCount, inputShape, inputRank, &out, 1)
    }
}

// MARK: - Metadata

@_cdecl("cnx_model_class_count")
public func cnxModelClassCount(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int64>?) -> cnx_status {
    get("cnx_model_class_count", model, count, "count") { Int64($0.classNames.count) }
}

@_cdecl("cnx_model_class_name")
public func cnxModelClassName(
    _ model: OpaquePointer?, _ index: Int64,
    _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> cnx_status {
    get("cnx_model_class_name", model, name, "name") { UnsafePointer(try pick($0.classNames, index, "class")) }
}

@_cdecl("cnx_model_preprocessing")
public func cnxModelPreprocessing(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<cnx_preprocessing>?) -> cnx_status {
    guarded("cnx_model_preprocessing") {
        let h = try handle(model)
        let out = try required(out, "preprocessing")
        let m = h.model.metadata
        // ImageNet's (timm's defaults), overridden by what the file states.
        var p = cnx_preprocessing()
        p.height = 224
        p.width = 224
        p.crop_pct = 0.875
        var interpolation = "bicubic"
        var mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        var stated: UInt32 = 0
        if let s = m[MetadataKey.inputSize]?.intsValue, s.count == 2 || s.count == 3, s.suffix(2).allSatisfy({ $0 > 0 }) {
            p.height = s[s.count - 2]
            p.width = s[s.count - 1]
            stated |= UInt32(CNX_PREPROCESS_SIZE)
        }
        switch m[MetadataKey.cropPct] {
        case .float(let v)?:
            p.crop_pct = Double(String(v)) ?? Double(v)
            stated |= UInt32(CNX_PREPROCESS_CROP_PCT)
        case .double(let v)?:
            p.crop_pct = v
            stated |= UInt32(CNX_PREPROCESS_CROP_PCT)
        default: break
        }
        if let v = m[MetadataKey.interpolation]?.stringValue?.lowercased(), ["bicubic", "bilinear"].contains(v) {
            interpolation = v
            stated |= UInt32(CNX_PREPROCESS_INTERPOLATION)
        }
        if let v = m[MetadataKey.mean]?.floatsValue, v.count == 3 {
            mean = v
            stated |= UInt32(CNX_PREPROCESS_MEAN)
        }
        if let v = m[MetadataKey.std]?.floatsValue, v.count == 3 {
            std = v
            stated |= UInt32(CNX_PREPROCESS_STD)
        }
        withUnsafeMutableBytes(of: &p.interpolation) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            for (i, b) in interpolation.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        p.mean = (mean[0], mean[1], mean[2])
        p.std = (std[0], std[1], std[2])
        p.stated = stated
        out.pointee = p
    }
}

@_cdecl("cnx_model_metadata")
public func cnxModelMetadata(
    _ model: OpaquePointer?, _ key: UnsafePointer<CChar>?,
    _ value: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> cnx_status {
    guarded("cnx_model_metadata") {
        let h = try handle(model)
        guard let key else { throw Failure(CNX_ERROR_INVALID_ARGUMENT, "key is NULL") }
        let out = try required(value, "value")
        let k = String(cString: key)
        guard let v = h.metadataText[k] else { throw Failure(CNX_ERROR_NOT_FOUND, "no metadata entry '\(k)'") }
        out.pointee = UnsafePointer(v)
    }
}

@_cdecl("cnx_model_metadata_json")
public func cnxModelMetadataJSON(_ model: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> cnx_status {
    get("cnx_model_metadata_json", model, json, "json") { UnsafePointer($0.metadataJSON) }
}
