import CNXGraph
import CNXImport

/// Chooses the reader for a model file by its content and extension.
enum ModelLoader {
    static func load(_ path: String) throws -> Graph {
        let lower = path.lowercased()
        if lower.hasSuffix(".onnx") || !lower.contains(".") {
            return try ONNXReader.load(path: path)
        }
        // Unknown extension: ONNX is the only format so far; try it and say so on failure.
        do {
            return try ONNXReader.load(path: path)
        } catch let e as CNXError {
            throw CNXError("\(e.message) (read as ONNX: the only model format this version reads)")
        }
    }
}
