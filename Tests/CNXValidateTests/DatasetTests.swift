import CNXGraph
import CNXIO
import CNXTestSupport
@testable import CNXValidate
import XCTest

final class DatasetTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func place(_ relative: String) throws {
        let url = dir.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ValidateFixtures.image("variants/rgb8.png"), toPath: url.path)
    }

    /// torchvision's ImageFolder: classes sorted by code point, files by (directory, name) at any depth.
    func testClassFoldersGiveImageFolderLabels() throws {
        for f in ["b/1.png", "a/y.png", "a/z.PNG", "a/sub/x.png", "B/q.jpeg.png", "a/-dash/w.png"] { try place(f) }
        try Data("not an image".utf8).write(to: dir.appendingPathComponent("a/README.txt"))
        try Data("loose".utf8).write(to: dir.appendingPathComponent("top.png"))
        let d = try Dataset.images(dir.path, preprocessing: .imagenet)
        XCTAssertEqual(d.classNames, ["B", "a", "b"])
        let names = try XCTUnwrap(d.files).map { String($0.dropFirst(dir.path.count + 1)) }
        // os.walk roots sorted: "a" < "a/-dash" < "a/sub".
        XCTAssertEqual(names, ["B/q.jpeg.png", "a/y.png", "a/z.PNG", "a/-dash/w.png", "a/sub/x.png", "b/1.png"])
        XCTAssertEqual(d.labels, [0, 1, 1, 1, 1, 2])
        XCTAssertEqual(d.labelSource, "class folders")
    }

    func testFlatFolderAndLabelFile() throws {
        for f in ["10.png", "2.png", "1.png"] { try place(f) }
        let d = try Dataset.images(dir.path, preprocessing: .imagenet)
        XCTAssertNil(d.labels)
        XCTAssertEqual(try XCTUnwrap(d.files).map { ($0 as NSString).lastPathComponent }, ["1.png", "10.png", "2.png"])
        let labels = dir.appendingPathComponent("labels.npy").path
        try NPY.write(Tensor(int64s: [7, 8, 9], shape: [3]), path: labels)
        try d.loadLabels(labels)
        XCTAssertEqual(d.labels, [7, 8, 9])
        try NPY.write(Tensor(int64s: [7, 8], shape: [2]), path: labels)
        XCTAssertThrowsError(try d.loadLabels(labels)) { e in
            XCTAssertEqual((e as? CNXError)?.message, "\(labels): 2 labels for 3 samples in \(dir.path)")
        }
        try NPY.write(Tensor(floats: [1, 2, 3], shape: [3]), path: labels)
        XCTAssertThrowsError(try d.loadLabels(labels)) { e in
            XCTAssertTrue(((e as? CNXError)?.message ?? "").contains("integers"))
        }
        let x = try d.batch(0..<3)
        XCTAssertEqual(x.shape, [3, 3, 224, 224])
    }

    func testEmptyClassFolderAndEmptyFolderAreErrors() throws {
        try place("cat/1.png")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("dog"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try Dataset.images(dir.path, preprocessing: .imagenet)) { e in
            XCTAssertTrue(((e as? CNXError)?.message ?? "").hasPrefix(dir.appendingPathComponent("dog").path))
        }
        let empty = dir.appendingPathComponent("dog").path
        XCTAssertThrowsError(try Dataset.images(empty, preprocessing: .imagenet))
        XCTAssertThrowsError(try Dataset.images(dir.appendingPathComponent("absent").path, preprocessing: .imagenet))
    }

    func testNPYBatchesAreSlices() throws {
        let path = dir.appendingPathComponent("x.npy").path
        try NPY.write(Tensor(floats: (0..<(5 * 3 * 2 * 2)).map(Float.init), shape: [5, 3, 2, 2]), path: path)
        let d = try Dataset.npy(path)
        XCTAssertEqual(d.count, 5)
        let b = try d.batch(2..<4)
        XCTAssertEqual(b.shape, [2, 3, 2, 2])
        XCTAssertEqual(b.floats, (24..<48).map(Float.init))
        try NPY.write(Tensor(floats: [1, 2, 3, 4], shape: [1, 4]), path: path)
        XCTAssertThrowsError(try Dataset.npy(path)) { e in
            XCTAssertTrue(((e as? CNXError)?.message ?? "").contains("N x 3 x H x W"))
        }
    }

    /// The PNG folder of the digits test split, through the image pipeline, gives test.npy exactly.
    func testDigitsPNGFolderReproducesTheTensors() throws {
        let info = try ValidateFixtures.digitsInfo()
        let p = Preprocessing(height: 32, width: 32, cropPct: 1, interpolation: .bicubic, mean: info.mean, std: info.std)
        let d = try Dataset.images(ValidateFixtures.digit("test_png"), preprocessing: p)
        d.threads = 2
        XCTAssertEqual(d.count, 360)
        XCTAssertEqual(d.classNames, (0..<10).map(String.init))
        let x = try d.batch(0..<d.count)
        let npy = try NPY.read(path: ValidateFixtures.digit("test.npy"))
        let labels = try NPY.read(path: ValidateFixtures.digit("test_labels.npy")).int64s
        let per = 3 * 32 * 32
        var worst: Float = 0
        for (i, file) in try XCTUnwrap(d.files).enumerated() {
            let row = try XCTUnwrap(Int(((file as NSString).lastPathComponent as NSString).deletingPathExtension))
            XCTAssertEqual(Int64(try XCTUnwrap(d.labels)[i]), labels[row], file)
            let (a, b) = (x.floats(i * per..<(i + 1) * per), npy.floats(row * per..<(row + 1) * per))
            for j in 0..<per { worst = max(worst, abs(a[j] - b[j])) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }
}
