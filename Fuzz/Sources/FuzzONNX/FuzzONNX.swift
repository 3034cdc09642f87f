import CNXGraph
import CNXImport
import FuzzSupport

/// libFuzzer entry point: the bytes as an ONNX model file. A model that references external data
/// finds only its own folder, which holds nothing but this input.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzONNX(data, size)
}

func fuzzONNX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzFile.write(data, size, name: "model.onnx")
    expectOnlyCNXErrors({ _ = try ONNXReader.load(path: path) }, isCNXError: { $0 is CNXError })
    return 0
}
