import CNXFormat
import CNXGraph
import Foundation

/// One of the top classes for an image.
public struct ClassScore: Equatable, Sendable {
    public var id: Int
    public var name: String
    /// Softmax probability.
    public var probability: Double
}

public enum Classification {
    /// Class names for a model with `classes` outputs: a file with one name a line when given,
    /// else the `.cnx`'s `general.class_names`, else ImageNet-1K's for 1000 classes, else the numbers.
    /// - Throws: `CNXError` when the file cannot be read or its line count is not `classes`.
    public static func classNames(classes: Int, metadata: [String: MetadataValue], labelsFile: String?) throws -> [String] {
        if let labelsFile {
            let names = try readNames(labelsFile)
            guard names.count == classes else {
                throw CNXError("\(labelsFile): \(names.count) names (one a line) for a model with \(classes) classes")
            }
            return names
        }
        if let names = metadata[MetadataKey.classNames]?.stringsValue, names.count == classes { return names }
        if classes == imagenetClassNames.count { return imagenetClassNames }
        return (0..<classes).map(String.init)
    }

    /// Class names from a text file, one a line (a trailing empty line ignored).
    public static func readNames(_ path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { throw CNXError("\(path): no such file") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CNXError("\(path): not a UTF-8 text file of class names, one a line")
        }
        var names = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
        }
        if names.last == "" { names.removeLast() }
        return names
    }

    /// Softmax of one row of logits, in Double.
    public static func softmax(_ row: UnsafeBufferPointer<Float>) -> [Double] {
        let m = Double(row.max() ?? 0)
        let e = row.map { exp(Double($0) - m) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// The `k` most probable classes of each row of `logits` [n, classes].
    public static func top(_ logits: Tensor, k: Int, names: [String]) -> [[ClassScore]] {
        let n = logits.shape[0], c = logits.count / max(n, 1)
        return logits.withUnsafeFloats { all in
            (0..<n).map { i in
                let row = UnsafeBufferPointer(rebasing: all[i * c..<(i + 1) * c])
                let p = softmax(row)
                return topK(row, min(k, c)).map { ClassScore(id: $0, name: $0 < names.count ? names[$0] : String($0), probability: p[$0]) }
            }
        }
    }
}
