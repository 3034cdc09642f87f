import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXRuntime
import CNXTestSupport
@testable import CNXValidate
import Foundation
import XCTest

/// Fixtures/make_transformers.py: transformers' ConvNextImageProcessor (PIL backend) and models.
enum TransformersFixtures {
    static var root: URL { Fixtures.root.appendingPathComponent("Fixtures/transformers") }
    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    struct Manifest: Decodable {
        struct PixelImage: Decodable {
            let image: String
            let pixels: String
            let shape: [Int]
        }
        struct PixelCase: Decodable {
            let name: String
            let folder: String
            let images: [PixelImage]
        }
        struct Photo: Decodable {
            let pixels: String
            let logits: String
            let top5: [Int]
            let top5_labels: [String]
            let top5_probabilities: [Double]
        }
        struct Model: Decodable {
            let name: String
            let pixel_case: String
            let zero_grn: Bool
            let num_labels: Int
            let photos: [String: Photo]
        }
        let pixel_cases: [PixelCase]
        let models: [Model]
    }

    static func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: root.appendingPathComponent("manifest.json")))
    }

    /// The preprocessing `run` and `validate` use for a folder with this preprocessor_config.json.
    static func preprocessing(folder: String) throws -> Preprocessing {
        Preprocessing.imagenet.updated(metadata: try TransformersPreprocessing.metadata(folder: folder))
    }
}

/// Our pixel tensors against transformers' `pixel_values` for the same photos.
///
/// The bound: for PNG files, whose pixels we decode exactly as PIL does (ImageTests), the whole
/// transform must give the same float32 values bit for bit (the resize is Pillow's fixed-point
/// arithmetic, the crop is a copy, and rescale and normalise are the same float64 and float32
/// operations). For JPEG files our libjpeg-turbo and the one inside Pillow may decode a pixel one
/// level apart, and a resize keeps such a difference at one level (Pillow's weights sum to one;
/// the rounding of the 8-bit result absorbs the small negative lobes), so the bound is one level:
/// |ours - theirs| x std / rescale_factor <= 1.
final class TransformersPixelTests: XCTestCase {
    /// Largest difference in 8-bit levels: the normalised difference times std, over the rescale factor.
    func levels(_ a: Tensor, _ b: Tensor, _ p: Preprocessing) -> Double {
        let plane = a.count / 3
        var worst = 0.0
        let (x, y) = (a.floats, b.floats)
        for i in 0..<a.count {
            let c = i / plane
            let d = Double(abs(x[i] - y[i])) * Double(p.std[c]) / (p.rescaleFactor ?? 1.0 / 255)
            worst = max(worst, d)
        }
        return worst
    }

    func testEveryCaseMatchesTheProcessorsPixelValues() throws {
        let manifest = try TransformersFixtures.manifest()
        XCTAssertGreaterThanOrEqual(manifest.pixel_cases.count, 17)
        var report: [String] = [], exact = 0
        for c in manifest.pixel_cases {
            let p = try TransformersFixtures.preprocessing(folder: TransformersFixtures.path(c.folder))
            for entry in c.images {
                let image = ValidateFixtures.image(entry.image)
                let x = try p.tensor(path: image)
                let expected = try NPY.read(path: TransformersFixtures.path(entry.pixels))
                XCTAssertEqual([1] + x.shape, expected.shape, "\(c.name) \(entry.image)")
                guard [1] + x.shape == expected.shape else { continue }
                let d = levels(x, expected, p)
                let raw = zip(x.floats, expected.floats).map { abs($0 - $1) }.max() ?? 0
                report.append("\(c.name) \(entry.image): \(String(format: "%.3g", d)) levels (\(raw) raw)")
                if entry.image.hasSuffix(".png") {
                    XCTAssertEqual(raw, 0, "\(c.name) \(entry.image): the same pixels must give the same float32 values")
                    exact += 1
                } else {
                    XCTAssertLessThanOrEqual(d, 1.0 + 1e-4, "\(c.name) \(entry.image)")
                }
            }
        }
        XCTAssertEqual(exact, 8, "every filter enlarging the PNG, and both sizes of flower.png")
        print("pixel_values against transformers' ConvNextImageProcessor (PIL):\n  " + report.joined(separator: "\n  "))
    }

    /// Both rules are exercised, and the differences from torchvision's conventions matter.
    func testTheTwoRulesAndWhatTorchvisionWouldDoInstead() throws {
        let crop = try TransformersFixtures.preprocessing(folder: TransformersFixtures.path("pixels/crop224"))
        XCTAssertEqual(crop.resizeMode, .shorterSide)
        XCTAssertEqual(crop.cropOffset, .floor)
        XCTAssertTrue(crop.resizedSize(width: 640, height: 427) == (383, 256))
        let square = try TransformersFixtures.preprocessing(folder: TransformersFixtures.path("pixels/square384"))
        XCTAssertEqual(square.resizeMode, .square)
        XCTAssertTrue(square.resizedSize(width: 640, height: 427) == (384, 384))
        XCTAssertEqual(square.mean, [0.5, 0.5, 0.5])

        // 383 - 224 = 159: transformers crops at column 79, torchvision's CenterCrop at 80.
        let png = ValidateFixtures.image("flower.png")
        let expected = try NPY.read(path: TransformersFixtures.path("pixels/crop224/flower.npy"))
        var torchvision = crop
        torchvision.cropOffset = .roundHalfEven
        XCTAssertGreaterThan(levels(try torchvision.tensor(path: png), expected, crop), 10)
        // ToTensor's x / 255 in float32 against transformers' float32(float64(x) x (1/255)): the
        // same for every level here, so either arithmetic would do at 1/255, but not in general.
        var divided = crop
        divided.rescaleFactor = nil
        XCTAssertEqual(try divided.tensor(path: png).floats, expected.floats)
    }

    func testMetadataStatesTheWholeTransform() throws {
        let m = try TransformersPreprocessing.metadata(folder: TransformersFixtures.path("pixels/crop224"))
        XCTAssertEqual(
            m,
            [
                MetadataKey.inputSize: .ints([224, 224]),
                MetadataKey.resizeMode: .string("shorter_side"),
                MetadataKey.cropPct: .double(0.875),
                MetadataKey.cropOffset: .string("floor"),
                MetadataKey.interpolation: .string("bicubic"),
                MetadataKey.rescaleFactor: .double(1.0 / 255),
                MetadataKey.mean: .floats([0.485, 0.456, 0.406]),
                MetadataKey.std: .floats([0.229, 0.224, 0.225]),
            ])
        // The hub's legacy form (`"size": 224`, ConvNextFeatureExtractor, no rescale keys) means
        // the same (make_transformers.py checked that transformers gives the same pixel_values).
        let legacy = try TransformersPreprocessing.metadata(folder: TransformersFixtures.path("convnextv2_zero_grn"))
        XCTAssertEqual(legacy, m)
        let square = try TransformersPreprocessing.metadata(folder: TransformersFixtures.path("pixels/square384"))
        XCTAssertEqual(square[MetadataKey.resizeMode], .string("square"))
        XCTAssertEqual(square[MetadataKey.inputSize], .ints([384, 384]))
        let raw = try TransformersPreprocessing.metadata(folder: TransformersFixtures.path("pixels/raw64"))
        XCTAssertEqual(raw[MetadataKey.rescaleFactor], .double(1))
        XCTAssertEqual(raw[MetadataKey.mean], .floats([0, 0, 0]))
        XCTAssertEqual(raw[MetadataKey.std], .floats([1, 1, 1]))
        XCTAssertEqual(raw[MetadataKey.interpolation], .string("bilinear"))
        // No preprocessor_config.json: nothing to say.
        XCTAssertEqual(try TransformersPreprocessing.metadata(folder: ValidateFixtures.images.path), [:])
    }

    /// Metadata that states timm's values alone goes back to torchvision's conventions.
    func testTimmMetadataAfterTransformersMetadataIsTorchvisionsConvention() throws {
        let p = try TransformersFixtures.preprocessing(folder: TransformersFixtures.path("pixels/square384"))
        let timm = p.updated(metadata: [MetadataKey.cropPct: .float(0.9), MetadataKey.interpolation: .string("bicubic")])
        XCTAssertEqual(timm.resizeMode, .shorterSide)
        XCTAssertEqual(timm.cropOffset, .roundHalfEven)
        XCTAssertNil(timm.rescaleFactor)
        XCTAssertEqual(timm.cropPct, 0.9)
        // Metadata without preprocessing (an ONNX file's) leaves it as it was.
        XCTAssertEqual(p.updated(metadata: [MetadataKey.classes: .int(1000)]), p)
    }

    /// do_resize false: the image must already be the input size; anything else is one error
    /// naming the file.
    func testNoResizeTakesOnlyImagesOfTheInputSize() throws {
        var p = try TransformersFixtures.preprocessing(folder: TransformersFixtures.path("pixels/raw64"))
        p.resizeMode = .none
        (p.height, p.width) = (17, 23)
        let small = ValidateFixtures.image("variants/rgb8.png")
        let image = try ImageDecoder.decode(path: small)
        XCTAssertEqual(
            try p.tensor(path: small).floats,
            Tensor(
                floats: (0..<3).flatMap { c in
                    (0..<17 * 23).map { Float(image.pixels[3 * $0 + c]) }
                }, shape: [3, 17, 23]
            ).floats)
        (p.height, p.width) = (16, 16)
        XCTAssertThrowsError(try p.tensor(path: small)) { e in
            XCTAssertEqual(
                (e as? CNXError)?.message,
                "\(small): the image is 23x17; this model's preprocessing does not resize (do_resize false) and takes 16x16 images")
        }
        let d = try Dataset.files([small], preprocessing: p)
        XCTAssertThrowsError(try d.batch(0..<1)) { e in
            XCTAssertTrue(((e as? CNXError)?.message ?? "").hasPrefix(small + ": the image is 23x17"))
        }
    }

    func testBadPreprocessorConfigsAreOneErrorNamingFileAndKey() throws {
        let dir = try scratchDirectory()
        let file = dir.appendingPathComponent("preprocessor_config.json")
        let cases: [(String, String)] = [
            ("{\"size\": {\"shortest_edge\": 224}", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            (
                "{\"size\": {\"height\": 224, \"width\": 224}}",
                "size is {\"height\":224,\"width\":224}: ConvNextImageProcessor needs size.shortest_edge"
            ),
            ("{\"size\": {\"shortest_edge\": \"224\"}}", "shortest_edge is \"224\", not an integer"),
            ("{\"size\": 0}", "size.shortest_edge 0 must be between 1 and 65536"),
            ("{\"resample\": 7}", "resample 7 is not a PIL filter (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"),
            ("{\"resample\": \"bicubic\"}", "resample is \"bicubic\", not an integer"),
            ("{\"size\": 224, \"crop_pct\": null}", "crop_pct is null; give a value or leave the key out"),
            ("{\"size\": 224, \"crop_pct\": -1}", "crop_pct -1.0 must be positive"),
            ("{\"do_rescale\": 1}", "do_rescale is 1, not true or false"),
            ("{\"rescale_factor\": true}", "rescale_factor is true, not a number"),
            ("{\"image_mean\": [0.5, 0.5]}", "image_mean is [0.5,0.5], not a number or three numbers (RGB)"),
            ("{\"image_std\": [0.5, 0, 0.5]}", "image_std [0.5, 0.0, 0.5] has a zero"),
            (
                "{\"image_processor_type\": \"BitImageProcessor\"}",
                "image_processor_type is 'BitImageProcessor': only ConvNextImageProcessor's transform is reproduced; remove preprocessor_config.json to convert without the preprocessing"
            ),
            (
                "{\"do_center_crop\": true, \"crop_size\": {\"height\": 200, \"width\": 200}}",
                "do_center_crop is true: ConvNextImageProcessor's own transform has no such step, and it is not reproduced"
            ),
        ]
        for (text, message) in cases {
            try Data(text.utf8).write(to: file)
            XCTAssertThrowsError(try TransformersPreprocessing.metadata(folder: dir.path), text) { e in
                let m = (e as? CNXError)?.message ?? "\(e)"
                XCTAssertTrue(m.hasPrefix(file.path + ": "), m)
                XCTAssertTrue(m.contains(message), "\(text): \(m)")
                XCTAssertFalse(m.contains("\n"), m)
            }
        }
        // Values that are fine: null where the step is off, a scalar mean, a null processor type.
        try Data(
            "{\"size\": 512, \"crop_pct\": null, \"do_normalize\": false, \"image_mean\": null, \"do_pad\": null, \"image_processor_type\": null}"
                .utf8
        ).write(to: file)
        let m = try TransformersPreprocessing.metadata(folder: dir.path)
        XCTAssertEqual(m[MetadataKey.resizeMode], .string("square"))
        XCTAssertNil(m[MetadataKey.cropPct])
        XCTAssertEqual(m[MetadataKey.mean], .floats([0, 0, 0]))
        try Data("{\"image_mean\": 0.25, \"image_std\": 2}".utf8).write(to: file)
        let n = try TransformersPreprocessing.metadata(folder: dir.path)
        XCTAssertEqual(n[MetadataKey.mean], .floats([0.25, 0.25, 0.25]))
        XCTAssertEqual(n[MetadataKey.std], .floats([2, 2, 2]))
        XCTAssertEqual(n[MetadataKey.inputSize], .ints([384, 384]))
        XCTAssertEqual(n[MetadataKey.resizeMode], .string("square"))
    }
}

/// The whole way, as a user goes: convert the transformers folder with the built tool, then
/// `run model.cnx photo --top 5`, against transformers' own model and processor: the same five
/// classes in the same order, named as config.json's id2label names them, and probabilities
/// within 1e-3 (`run` prints them to 0.01 %, 5e-5 of rounding).
final class TransformersEndToEndTests: XCTestCase {
    struct Printed {
        var id: Int
        var label: String
        var probability: Double
    }

    /// `run`'s output: the image path, then "  12.34%  label (id)" lines.
    func parse(_ stdout: String) -> [String: [Printed]] {
        var out: [String: [Printed]] = [:]
        var current: String?
        for line in stdout.split(separator: "\n").map(String.init) {
            if !line.hasPrefix(" ") {
                current = line
                out[line] = []
                continue
            }
            let fields = line.trimmingCharacters(in: .whitespaces)
            guard let current, let percent = fields.firstIndex(of: "%"), let open = fields.lastIndex(of: "("),
                let p = Double(fields[..<percent]), let id = Int(fields[fields.index(after: open)...].dropLast())
            else { continue }
            let label = fields[fields.index(after: percent)..<open].trimmingCharacters(in: .whitespaces)
            out[current, default: []].append(Printed(id: id, label: label, probability: p / 100))
        }
        return out
    }

    /// `run SOURCE photos --top 5` against transformers' top 5 for `model`; one report line per photo.
    func checkRun(_ source: String, _ model: TransformersFixtures.Manifest.Model, _ what: String) throws -> [String] {
        let photos = model.photos.keys.sorted()
        let r = try runTool(["run", source] + photos.map { ValidateFixtures.image($0) } + ["--top", "5"])
        XCTAssertEqual(r.status, 0, "\(model.name) (\(what)): \(r.stderr)")
        let printed = parse(r.stdout)
        var report: [String] = []
        for photo in photos {
            let expected = try XCTUnwrap(model.photos[photo])
            let got = try XCTUnwrap(printed[ValidateFixtures.image(photo)], "\(model.name) \(photo): \(r.stdout)")
            let name = "\(model.name) \(photo) (\(what))"
            XCTAssertEqual(got.map(\.id), expected.top5, name)
            XCTAssertEqual(got.map(\.label), expected.top5_labels, name)
            guard got.count == 5 else { continue }
            let worst = zip(got, expected.top5_probabilities).map { abs($0.probability - $1) }.max() ?? 1
            XCTAssertLessThanOrEqual(worst, 1e-3, name)
            report.append(
                "\(name): top 5 \(got.map(\.id) == expected.top5 ? "same" : "DIFFERENT"), probabilities within \(String(format: "%.1e", worst))"
            )
        }
        return report
    }

    func softmax(_ v: [Float]) -> [Double] {
        let top = Double(v.max() ?? 0)
        let e = v.map { exp(Double($0) - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    /// Converts each fixture folder with the built tool and hands `body` the model, its folder and
    /// the `.cnx` (a folder that does not convert is a failure); prints the report lines it returns.
    func forEachConverted(_ body: (TransformersFixtures.Manifest.Model, String, String, URL) throws -> [String]) throws {
        let manifest = try TransformersFixtures.manifest()
        XCTAssertEqual(manifest.models.count, 3)
        let dir = try scratchDirectory()
        var report: [String] = []
        for model in manifest.models {
            let folder = TransformersFixtures.path(model.name)
            let cnx = dir.appendingPathComponent(model.name + ".cnx").path
            let converted = try runTool([folder, cnx])
            XCTAssertEqual(converted.status, 0, "\(model.name): \(converted.stderr)")
            guard converted.status == 0 else { continue }
            report += try body(model, folder, cnx, dir)
        }
        print("against transformers:\n  " + report.joined(separator: "\n  "))
    }

    /// The user's way: convert the folder, run the .cnx (and the folder itself).
    func testRunAgreesWithTransformersOnEveryPhoto() throws {
        try forEachConverted { model, folder, cnx, _ in
            // The .cnx carries the processor's transform.
            let metadata = try CNXReader.load(path: cnx).metadata
            for (key, value) in try TransformersPreprocessing.metadata(folder: folder) {
                XCTAssertEqual(metadata[key], value, "\(model.name): \(key)")
            }
            return try checkRun(cnx, model, "converted") + checkRun(folder, model, "folder")
        }
    }

    /// `run` itself, apart from how the reader records the folder's configuration: the converted
    /// graph with the preprocessing metadata and config.json's class names written in by this test.
    func testRunHonoursTheProcessorsTransformRecordedInACNX() throws {
        try forEachConverted { model, folder, cnx, dir in
            var file = try CNXReader.load(path: cnx)
            for (key, value) in try TransformersPreprocessing.metadata(folder: folder) { file.metadata[key] = value }
            let config =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any]
            let id2label = try XCTUnwrap(config?["id2label"] as? [String: String])
            file.metadata[MetadataKey.classNames] = .strings((0..<model.num_labels).map { id2label[String($0)] ?? "" })
            let stated = dir.appendingPathComponent(model.name + "-stated.cnx").path
            try CNXWriter.write(file, to: stated)
            var report = try checkRun(stated, model, "metadata written by the test")

            // The same at full precision, in this process: every class's probability, and the logits.
            let runtime = try Model(graph: file.graph, metadata: file.metadata, threads: 1)
            let p = Preprocessing.imagenet.updated(metadata: file.metadata)
            for (photo, expected) in model.photos.sorted(by: { $0.key < $1.key }) {
                let x = try p.tensor(path: ValidateFixtures.image(photo))
                let logits = try runtime.predict(x.reshaped([1] + x.shape)).floats
                let reference = try NPY.read(path: TransformersFixtures.path(expected.logits)).floats
                let worst = zip(softmax(logits), softmax(reference)).map { abs($0 - $1) }.max() ?? 1
                let relative = relativeError(logits, reference)
                XCTAssertLessThanOrEqual(worst, 1e-3, "\(model.name) \(photo)")
                XCTAssertLessThanOrEqual(relative, 1e-5, "\(model.name) \(photo)")
                report.append(
                    "\(model.name) \(photo) (in process): every probability within \(String(format: "%.1e", worst)), logits \(String(format: "%.1e", relative)) of max |logit|"
                )
            }
            return report
        }
    }
}
