import Foundation

/// The model-family fixtures (`Fixtures/families`, made by `Fixtures/make_families.py`): small
/// exports of every ConvNeXt variant the converter must fuse, with PyTorch's outputs.
public enum FamilyFixtures: FixtureManifest {
    public static var root: URL { Fixtures.root.appendingPathComponent("Fixtures/families") }

    public struct Case: Decodable {
        public let input: String
        /// PyTorch eager output: the oracle.
        public let expected: String
        public let ort_expected: String
    }

    public struct Entry: FixtureEntry {
        public static var folder: URL { FamilyFixtures.root }

        public let name: String
        public let family: String
        public let source: String
        /// timm's model name or the transformers class.
        public let model: String
        public let exporter: String
        public let opset: Int
        public let depths: [Int]
        public let dims: [Int]
        public let activation: String
        public let norm: String
        public let eps: Double
        /// The head's norm's epsilon (transformers: `layer_norm_eps`, 1e-12).
        public let head_eps: Double
        public let head: String
        public let stem: String
        /// "none", "random" (V2 with GRN far from its initial value) or "zero" (as initialised).
        public let grn: String
        public let cases: [Case]

        public var onnx: String { path("model.onnx") }
    }
}
