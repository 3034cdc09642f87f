import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// Paths of the image and digits fixtures (Fixtures/make_images.py, Fixtures/make_digits.py).
enum ValidateFixtures {
    static var images: URL { Fixtures.root.appendingPathComponent("Fixtures/images") }
    static var digits: URL { Fixtures.root.appendingPathComponent("Fixtures/digits") }
    static func image(_ name: String) -> String { images.appendingPathComponent(name).path }
    static func digit(_ name: String) -> String { digits.appendingPathComponent(name).path }

    struct ImageManifest: Decodable {
        struct Case: Decodable {
            let image: String
            let expected: String
            let size: Int
            let crop_pct: Double
            let interpolation: String
            let resize: Int
        }
        struct Variant: Decodable {
            let file: String
            let expected: String
        }
        let mean: [Float]
        let std: [Float]
        let cases: [Case]
        let variants: [Variant]
    }

    static func imageManifest() throws -> ImageManifest {
        try JSONDecoder().decode(ImageManifest.self, from: Data(contentsOf: images.appendingPathComponent("manifest.json")))
    }

    struct DigitsInfo: Decodable {
        let mean: [Float]
        let std: [Float]
        let torch_correct: Int
        let torch_top1_accuracy: Double
        let ort_correct: Int
        let samples: [String: Int]
    }

    static func digitsInfo() throws -> DigitsInfo {
        try JSONDecoder().decode(DigitsInfo.self, from: Data(contentsOf: digits.appendingPathComponent("info.json")))
    }

    /// The digits model converted to .cnx once per test run (the CLI's `convert`).
    static let convertedDigits: Result<String, Error> = Result {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("digits.cnx").path
        let r = try runTool([digit("model.onnx"), out])
        guard r.status == 0 else { throw CNXError("convert failed: \(r.stderr)") }
        return out
    }
}

/// The JSON object a command printed.
func parseJSON(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try XCTUnwrap(object as? [String: Any], "not a JSON object: \(text)", file: file, line: line)
}
