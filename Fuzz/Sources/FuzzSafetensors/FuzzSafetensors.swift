import CNXGraph
import CNXImport
import FuzzSupport

/// libFuzzer entry point: the bytes as `model.safetensors`, read and turned into a graph as the converter
/// does (`CheckpointReader.load`). The file's folder holds nothing else, so no config.json.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzSafetensors(data, size)
}

func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzFile.write(data, size, name: "model.safetensors")
    expectOnlyCNXErrors({ _ = try CheckpointReader.load(path: path, kind: .safetensors) }, isCNXError: { $0 is CNXError })
    return 0
}
