import CNXKit

// What `convnext-convert run model.cnx photo.jpg` does: the preprocessing and class names
// come from the file (ImageNet's where it records none).
let classifier = try ImageClassifier(path: "model.cnx")  // maps the file, packs the weights
print(classifier.model.metadata[MetadataKey.variant] ?? "")  // architecture, preprocessing, source...
for s in try classifier.classify(imageAt: "photo.jpg", top: 3) {
    print(s.name, s.probability)
}

// A preprocessed batch, as `convnext-convert run model.cnx --input batch.npy --output logits.npy`.
let model = classifier.model
let batch = try NPY.read(path: "batch.npy")  // Tensor float32 [N, 3, H, W]
let workspace = model.makeWorkspace()  // optional: reuse scratch across calls
let logits = try model.predict(batch, workspace: workspace)  // [N, classes]
try NPY.write(logits, path: "logits.npy")
