// Everything an application needs to do what `convnext-convert run` does, behind one import:
// tensors (CNXGraph) and `.npy` files (CNXIO), the `.cnx` runtime (CNXRuntime), metadata keys
// (CNXFormat), image decoding, preprocessing and class names (CNXValidate), and
// `ImageClassifier`, which puts them together as the command does. No importer, no protobuf.
@_exported import CNXFormat
@_exported import CNXGraph
@_exported import CNXIO
@_exported import CNXRuntime
@_exported import CNXValidate
import Foundation

/// A `.cnx` model with the preprocessing and class names it records, ready for images:
///
///     let classifier = try ImageClassifier(path: "model.cnx")
///     for s in try classifier.classify(imageAt: "photo.jpg", top: 5) { print(s.name, s.probability) }
///
/// The preprocessing is the file's (`preprocess.*`, `input.size`, the size its input fixes),
/// else ImageNet's, exactly as `convnext-convert run` resolves it without flags; `usesDefaults`
/// says which settings fell back to ImageNet's.
public final class ImageClassifier: @unchecked Sendable {
    public let model: Model
    public var preprocessing: Preprocessing
    /// Settings (`size`, `crop_pct`, `interpolation`, `mean`, `std`) the file does not record.
    public let usesDefaults: [String]

    public init(path: String, threads: Int? = nil) throws {
        model = try Model(path: path, threads: threads)
        var p = Preprocessing.imagenet.updated(metadata: model.metadata)
        if let s = model.graph.inputs.first?.shape, s.count == 4, let h = s[2].value, let w = s[3].value { (p.height, p.width) = (h, w) }
        preprocessing = p
        let m = model.metadata
        var defaults: [String] = []
        let fixed = model.graph.inputs.first?.shape.map { $0.count == 4 && $0[2].value != nil && $0[3].value != nil } ?? false
        if m[MetadataKey.inputSize] == nil && !fixed { defaults.append("size") }
        for (key, name) in [
            (MetadataKey.cropPct, "crop_pct"), (MetadataKey.interpolation, "interpolation"),
            (MetadataKey.mean, "mean"), (MetadataKey.std, "std"),
        ] where m[key] == nil {
            defaults.append(name)
        }
        usesDefaults = defaults
    }

    /// The model input for one image file: decoded, resized, centre-cropped, normalised,
    /// as a float32 [1, 3, H, W] batch.
    public func input(imageAt path: String) throws -> Tensor {
        try preprocessing.tensor(path: path).reshaped([1, 3, preprocessing.height, preprocessing.width])
    }

    /// Every output of the model for one image, by name (a backbone's feature maps).
    public func outputs(imageAt path: String) throws -> [String: Tensor] {
        try model.predictAll([model.inputName: try input(imageAt: path)])
    }

    /// Class names: the file's `general.class_names`, else ImageNet-1K's for 1000 classes,
    /// else the class numbers.
    public func classNames(classes: Int) -> [String] {
        (try? Classification.classNames(classes: classes, metadata: model.metadata, labelsFile: nil)) ?? (0..<classes).map(String.init)
    }

    /// The `top` most probable classes of one image, most probable first.
    public func classify(imageAt path: String, top: Int = 5) throws -> [ClassScore] {
        let logits = try model.predict(try input(imageAt: path))
        let classes = logits.count
        return Classification.top(logits.reshaped([1, classes]), k: top, names: classNames(classes: classes))[0]
    }
}
