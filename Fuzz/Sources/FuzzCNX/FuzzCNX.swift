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
        return fuzzReader(data, size, name: "model.cnx", expected: CNXError.self) { _ = try CNXReader.load(path: $0) }
    }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let repair = bytes[size - 1] & 1 == 1
    if repair {
        bytes.removeLast()
        CNXChecksums.repair(&bytes)
    }
    return bytes.withUnsafeBufferPointer { buffer in
        fuzzReader(buffer.baseAddress, buffer.count, name: "model.cnx", expected: CNXError.self) { path in
            if repair {
                let file = try CNXReader.load(path: path, verify: false)
                _ = try Model(graph: file.graph, metadata: file.metadata, threads: 1)
            } else {
                _ = try Model(path: path, threads: 1)
            }
        }
    }
}
