import CNXGraph
import CNXImport
import FuzzSupport

/// libFuzzer entry point: the bytes as `model.safetensors`, read and turned into a graph as the converter
/// does (`CheckpointReader.load`). The file's folder holds nothing else, so no config.json.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzReader(data, size, name: "model.safetensors", expected: CNXError.self) {
        _ = try CheckpointReader.load(path: $0, kind: .safetensors)
    }
}
