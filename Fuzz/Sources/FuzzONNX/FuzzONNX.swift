import CNXGraph
import CNXImport
import FuzzSupport

/// libFuzzer entry point: the bytes as an ONNX model file. A model that references external data
/// finds only its own folder, which holds nothing but this input.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzReader(data, size, name: "model.onnx", expected: CNXError.self) { _ = try ONNXReader.load(path: $0) }
}
