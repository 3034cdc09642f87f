import CNXGraph
import CNXIO
import FuzzSupport

/// libFuzzer entry point: the bytes as a .npy file, through the path reader the CLI uses.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzReader(data, size, name: "input.npy", expected: CNXError.self) { _ = try NPY.read(path: $0) }
}
