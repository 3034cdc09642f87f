import CNXGraph
import CNXIO
import FuzzSupport

/// libFuzzer entry point: the bytes as a .npy file, through the path reader the CLI uses.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzNPY(data, size)
}

func fuzzNPY(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzFile.write(data, size, name: "input.npy")
    expectOnlyCNXErrors({ _ = try NPY.read(path: path) }, isCNXError: { $0 is CNXError })
    return 0
}
