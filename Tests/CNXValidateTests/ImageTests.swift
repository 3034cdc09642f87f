import CNXGraph
import CNXIO
import CNXTestSupport
@testable import CNXValidate
import XCTest

/// JPEG and PNG decoding: the pixels PIL's `Image.open(path).convert("RGB")` gives.
final class ImageDecodingTests: XCTestCase {
    func testEveryPNGColourTypeAndDepthDecodesExactly() throws {
        for v in try ValidateFixtures.imageManifest().variants where v.file.hasSuffix(".png") {
            let image = try ImageDecoder.decode(path: ValidateFixtures.image(v.file))
            let expected = try NPY.read(path: ValidateFixtures.image(v.expected))
            XCTAssertEqual([image.height, image.width, 3], expected.shape, v.file)
            XCTAssertEqual(image.pixels.map(Int64.init), expected.int64s, v.file)
        }
    }

    func testGreyAndCMYKJPEGs() throws {
        for v in try ValidateFixtures.imageManifest().variants where v.file.hasSuffix(".jpg") {
            let image = try ImageDecoder.decode(path: ValidateFixtures.image(v.file))
            let expected = try NPY.read(path: ValidateFixtures.image(v.expected)).int64s
            XCTAssertEqual(image.pixels.count, expected.count, v.file)
            let worst = zip(image.pixels, expected).map { abs(Int64($0) - $1) }.max() ?? 0
            // libjpeg-turbo here and the one bundled with Pillow may differ by one level.
            XCTAssertLessThanOrEqual(worst, 1, v.file)
        }
    }

    /// flower.png holds the pixels PIL decodes from flower.jpg: this libjpeg-turbo agrees with it.
    func testJPEGPhotoDecodesAsPILDoes() throws {
        let jpeg = try ImageDecoder.decode(path: ValidateFixtures.image("flower.jpg"))
        let png = try ImageDecoder.decode(path: ValidateFixtures.image("flower.png"))
        XCTAssertEqual([jpeg.width, jpeg.height], [640, 427])
        XCTAssertEqual([png.width, png.height], [640, 427])
        let worst = zip(jpeg.pixels, png.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1)
    }

    func testBadFilesAreOneErrorNamingTheFile() throws {
        let dir = try scratchDirectory()
        for name in ["china.jpg", "flower.png"] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: ValidateFixtures.image(name)))
            let cut = dir.appendingPathComponent("cut-" + name)
            try bytes.prefix(bytes.count / 2).write(to: cut)
            XCTAssertThrowsError(try ImageDecoder.decode(path: cut.path), name) { e in
                let message = (e as? CNXError)?.message ?? ""
                XCTAssertTrue(message.hasPrefix(cut.path), message)
                XCTAssertTrue(message.contains("truncated") || message.contains("Premature") || message.contains("ends"), message)
            }
            // Damage inside the data: garbage where the compressed stream is.
            var damaged = bytes
            for i in stride(from: 200, to: min(damaged.count, 4000), by: 1) { damaged[i] = UInt8(truncatingIfNeeded: i &* 131) }
            let bad = dir.appendingPathComponent("bad-" + name)
            try damaged.write(to: bad)
            do {
                _ = try ImageDecoder.decode(path: bad.path)
            } catch let e as CNXError {
                XCTAssertTrue(e.message.hasPrefix(bad.path), e.message)
            }
        }
        let text = dir.appendingPathComponent("notes.png")
        try Data("hello, world\n".utf8).write(to: text)
        XCTAssertThrowsError(try ImageDecoder.decode(path: text.path)) { e in
            XCTAssertEqual((e as? CNXError)?.message, "\(text.path): not a JPEG or PNG file (first bytes 68 65 6c 6c at byte 0)")
        }
        XCTAssertThrowsError(try ImageDecoder.decode(path: dir.appendingPathComponent("absent.jpg").path)) { e in
            XCTAssertTrue(((e as? CNXError)?.message ?? "").contains("absent.jpg"))
        }
    }
}

/// The whole transform against torchvision's (Resize with PIL, CenterCrop, ToTensor, Normalize),
/// on scikit-learn's two photographs.
final class PreprocessingTests: XCTestCase {
    /// Largest difference in [0, 1] units: the normalised values times std, so that 1/255 is one
    /// grey level before normalisation.
    func largestDifference(_ a: Tensor, _ b: Tensor, std: [Float]) -> Float {
        let plane = a.count / 3
        var worst: Float = 0
        let (x, y) = (a.floats, b.floats)
        for i in 0..<a.count { worst = max(worst, abs(x[i] - y[i]) * std[i / plane]) }
        return worst
    }

    func testPhotosMatchTorchvisionWithinOneLevel() throws {
        let manifest = try ValidateFixtures.imageManifest()
        XCTAssertEqual(manifest.cases.count, 7)
        var report: [String] = []
        for c in manifest.cases {
            let p = Preprocessing(
                height: c.size, width: c.size, cropPct: c.crop_pct,
                interpolation: try XCTUnwrap(Interpolation(rawValue: c.interpolation)),
                mean: manifest.mean, std: manifest.std)
            let x = try p.tensor(path: ValidateFixtures.image(c.image))
            let expected = try NPY.read(path: ValidateFixtures.image(c.expected))
            XCTAssertEqual([1] + x.shape, expected.shape)
            let d = largestDifference(x, expected, std: manifest.std)
            report.append("\(c.image) \(c.interpolation) \(c.size)/\(c.crop_pct): \(d * 255) levels")
            XCTAssertLessThanOrEqual(d, 1.0 / 255 + 1e-6, "\(c.image) \(c.expected)")
            if c.image.hasSuffix(".png") {
                // Same pixels as PIL's: the resize and crop must give the same bytes.
                XCTAssertLessThanOrEqual(d, 1e-6, "\(c.image) \(c.expected)")
            }
        }
        print("largest differences from torchvision:\n  " + report.joined(separator: "\n  "))
    }

    func testResizeMatchesTorchvisionSizes() {
        let p = Preprocessing.imagenet
        // 640x427: shorter side to 256, longer to int(256 * 640 / 427) = 383.
        XCTAssertTrue(p.resizedSize(width: 640, height: 427) == (383, 256))
        XCTAssertTrue(p.resizedSize(width: 427, height: 640) == (256, 383))
        var q = p
        q.height = 160
        q.width = 160
        q.cropPct = 0.95
        XCTAssertTrue(q.resizedSize(width: 500, height: 500) == (168, 168))
        // crop_pct from a float32 field: 0.9 is 0.899999976; still floor(288 / 0.9) = 320.
        q.height = 288
        q.width = 288
        q.cropPct = Preprocessing.decimal(Float(0.9))
        XCTAssertTrue(q.resizedSize(width: 320, height: 400) == (320, 400))
        // Non-square input: exact resize, as timm does.
        q.height = 224
        q.width = 256
        q.cropPct = 1
        XCTAssertTrue(q.resizedSize(width: 999, height: 10) == (256, 224))
    }

    func testCentreCropRoundsHalfToEven() {
        // Python's round: offset round(1.5) = 2 for width 5, round(2.5) = 2 for width 7, 1 for width 4.
        let crop = Preprocessing(height: 1, width: 2, cropPct: 1, interpolation: .bilinear, mean: [0], std: [1])
        for (w, left) in [(5, 2), (7, 2), (4, 1)] {
            let image = RGBImage(width: w, height: 1, pixels: (0..<w).flatMap { [UInt8($0), 0, 0] })
            XCTAssertEqual(crop.centreCrop(image).pixels, [UInt8(left), 0, 0, UInt8(left + 1), 0, 0], "width \(w)")
        }
        // Smaller than the crop: zero padding, left (2 - 1) / 2 = 0.
        let one = RGBImage(width: 1, height: 1, pixels: [9, 9, 9])
        XCTAssertEqual(crop.centreCrop(one).pixels, [9, 9, 9, 0, 0, 0])
    }

    func testResampleKeepsAConstantImageAndIdentity() {
        let flat = RGBImage(width: 37, height: 23, pixels: [UInt8](repeating: 77, count: 37 * 23 * 3))
        for f in Interpolation.allCases {
            for (w, h) in [(10, 7), (80, 50), (37, 5)] {
                XCTAssertTrue(Resample.resize(flat, width: w, height: h, filter: f).pixels.allSatisfy { $0 == 77 }, "\(f) \(w)x\(h)")
            }
            let ramp = RGBImage(width: 9, height: 4, pixels: (0..<108).map { UInt8($0 * 2) })
            XCTAssertEqual(Resample.resize(ramp, width: 9, height: 4, filter: f), ramp)
        }
    }

    /// Halving with the bilinear (triangle) filter, stretched to support 2 by the scale.
    func testBilinearHalvingByHand() {
        let row: [UInt8] = [0, 80, 160, 240, 0, 0, 100, 200]
        let image = RGBImage(width: 8, height: 1, pixels: row.flatMap { [$0, $0, $0] })
        let out = Resample.resize(image, width: 4, height: 1, filter: .bilinear)
        // Output 0: centre 1.0, taps 0...2 at (j - 1 + 0.5) / 2 = -0.25, 0.25, 0.75: weights
        // 0.75, 0.75, 0.25, normalised 3/7, 3/7, 1/7: (0 * 3 + 80 * 3 + 160) / 7 = 57.1.
        XCTAssertEqual(out.pixels[0], 57)
        // Output 1: centre 3.0, taps 1...4: weights 0.25, 0.75, 0.75, 0.25 over 2:
        // (80 * 0.25 + 160 * 0.75 + 240 * 0.75 + 0) / 2 = 160.
        XCTAssertEqual(out.pixels[3], 160)
        XCTAssertEqual(out.pixels[4], 160)
    }
}
