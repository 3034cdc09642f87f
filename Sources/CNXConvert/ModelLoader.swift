import CNXFormat
import CNXGraph
import CNXImport
import Foundation

/// A model file of any kind the tool reads, as a graph and its metadata.
public struct LoadedModel {
    public var graph: Graph
    public var metadata: [String: MetadataValue]
    /// "onnx" or "cnx".
    public var format: String
}

/// Chooses the reader for a model file by its first bytes (a `.cnx` starts with its magic),
/// then by its extension.
public enum ModelLoader {
    public static func load(_ path: String) throws -> LoadedModel {
        if isCNX(path) {
            let file = try CNXReader.load(path: path)
            return LoadedModel(graph: file.graph, metadata: file.metadata, format: "cnx")
        }
        do {
            return LoadedModel(graph: try ONNXReader.load(path: path), metadata: [:], format: "onnx")
        } catch let e as CNXError where !path.lowercased().hasSuffix(".onnx") {
            throw CNXError("\(e.message) (read as ONNX; this version reads .onnx and .cnx files)")
        }
    }

    /// True when the file starts with the `.cnx` magic.
    static func isCNX(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 4)) ?? Data()
        return head.count == 4 && [UInt8](head) == [0x43, 0x4E, 0x58, 0x00]   // "CNX\0", Formats/CNX.md
    }
}
