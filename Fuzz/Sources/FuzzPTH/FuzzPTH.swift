import CNXGraph
import CNXImport
import FuzzSupport

/// libFuzzer entry point: the bytes as `model.pth`, read and turned into a graph as the converter
/// does (`CheckpointReader.load`). The file's folder holds nothing else, so no config.json.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzPTH(data, size)
}

func fuzzPTH(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzFile.write(data, size, name: "model.pth")
    expectOnlyCNXErrors({ _ = try CheckpointReader.load(path: path, kind: .pth) }, isCNXError: { $0 is CNXError })
    return 0
}
