import CNXFormat
import CNXGraph
import CNXRuntime
import FuzzSupport

/// libFuzzer entry point: the bytes as a .cnx file, read and then loaded by the runtime
/// (`Model(path:)`, which also packs the weights), as an application embedding it would.
///
/// Checksums make a random mutation fail at the header CRC almost always, so when the input's
/// last byte is odd that byte is dropped, the header's size and checksum are repaired and the
/// tensor checksums are not verified: mutations then reach the sections behind the checksums.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzCNX(data, size)
}

func fuzzCNX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else {
        let path = FuzzFile.write(data, size, name: "model.cnx")
        expectOnlyCNXErrors({ _ = try CNXReader.load(path: path) }, isCNXError: { $0 is CNXError })
        return 0
    }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let repair = bytes[size - 1] & 1 == 1
    if repair {
        bytes.removeLast()
        CNXChecksums.repair(&bytes)
    }
    let path = bytes.withUnsafeBufferPointer { FuzzFile.write($0.baseAddress, $0.count, name: "model.cnx") }
    expectOnlyCNXErrors(
        {
            if repair {
                let file = try CNXReader.load(path: path, verify: false)
                _ = try Model(graph: file.graph, metadata: file.metadata, threads: 1)
            } else {
                _ = try Model(path: path, threads: 1)
            }
        }, isCNXError: { $0 is CNXError })
    return 0
}
