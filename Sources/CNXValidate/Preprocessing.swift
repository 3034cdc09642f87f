import CNXFormat
import CNXGraph
import Foundation

/// How an image becomes a model input, as timm's and torchvision's evaluation transforms do it:
///
///     Resize(floor(size / crop_pct), interpolation)   # PIL, shorter side, antialiased
///     CenterCrop(size)
///     ToTensor()                                      # x / 255
///     Normalize(mean, std)                            # (x - mean) / std
///
/// For a non-square input size (height != width) the resize goes to exactly
/// (floor(height / crop_pct), floor(width / crop_pct)), as timm does.
public struct Preprocessing: Equatable, Sendable {
    public var height: Int
    public var width: Int
    public var cropPct: Double
    public var interpolation: Interpolation
    public var mean: [Float]
    public var std: [Float]

    public init(height: Int, width: Int, cropPct: Double, interpolation: Interpolation, mean: [Float], std: [Float]) {
        self.height = height
        self.width = width
        self.cropPct = cropPct
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
    }

    /// What the published ImageNet weights expect (timm's defaults).
    public static let imagenet = Preprocessing(height: 224, width: 224, cropPct: 0.875, interpolation: .bicubic,
                                               mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// Checks the values make sense; the message names the setting.
    public func validate() throws {
        guard height >= 1, width >= 1 else { throw CNXError("preprocessing: size \(height)x\(width) must be positive") }
        guard cropPct > 0, cropPct.isFinite else { throw CNXError("preprocessing: crop_pct \(cropPct) must be positive") }
        guard mean.count == 3 || mean.count == 1 else { throw CNXError("preprocessing: mean needs 3 values (or 1), got \(mean.count)") }
        guard std.count == 3 || std.count == 1 else { throw CNXError("preprocessing: std needs 3 values (or 1), got \(std.count)") }
        guard std.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw CNXError("preprocessing: std \(std) must be non-zero") }
    }

    /// The size Resize produces for an image of `w` x `h`: torchvision's rule for an int size
    /// (shorter side to s, longer side to int(s * long / short)), or exact for a non-square input.
    public func resizedSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        // A tiny allowance, so that a crop_pct stored as a float32 does not turn 256 into 255.999.
        let scaleH = Int((Double(height) / cropPct + 1e-9).rounded(.down))
        let scaleW = Int((Double(width) / cropPct + 1e-9).rounded(.down))
        guard scaleH == scaleW else { return (max(scaleW, 1), max(scaleH, 1)) }
        let s = max(scaleH, 1)
        if w <= h {
            return (s, max(Int(Double(s * h) / Double(w)), 1))
        }
        return (max(Int(Double(s * w) / Double(h)), 1), s)
    }

    /// Resize, then centre crop: an image of exactly `width` x `height`.
    public func resizeAndCrop(_ image: RGBImage) -> RGBImage {
        centreCrop(resize(image))
    }

    /// torchvision's `Resize`: the size `resizedSize` gives, with PIL's resampling.
    public func resize(_ image: RGBImage) -> RGBImage {
        let (rw, rh) = resizedSize(width: image.width, height: image.height)
        if rw == image.width && rh == image.height { return image }
        return Resample.resize(image, width: rw, height: rh, filter: interpolation)
    }

    /// torchvision's `CenterCrop` to `width` x `height`: zero padding first where the image is
    /// smaller, then the window at int(round((H - h) / 2)), int(round((W - w) / 2)), rounding
    /// half to even as Python does.
    public func centreCrop(_ image: RGBImage) -> RGBImage {
        var img = image
        if img.width < width || img.height < height {
            let pw = max(width, img.width), ph = max(height, img.height)
            let left = (pw - img.width) / 2, top = (ph - img.height) / 2
            var padded = [UInt8](repeating: 0, count: pw * ph * 3)
            for y in 0..<img.height {
                let src = y * img.width * 3, dst = ((y + top) * pw + left) * 3
                padded.replaceSubrange(dst..<dst + img.width * 3, with: img.pixels[src..<src + img.width * 3])
            }
            img = RGBImage(width: pw, height: ph, pixels: padded)
        }
        if img.width == width && img.height == height { return img }
        let top = Int((Double(img.height - height) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(img.width - width) / 2).rounded(.toNearestOrEven))
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let src = ((y + top) * img.width + left) * 3
            out.replaceSubrange(y * width * 3..<(y + 1) * width * 3, with: img.pixels[src..<src + width * 3])
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// Writes the normalised CHW float32 values of an image that is already `width` x `height`.
    public func normalise(_ image: RGBImage, into out: UnsafeMutablePointer<Float>) {
        precondition(image.width == width && image.height == height)
        let plane = width * height
        image.pixels.withUnsafeBufferPointer { p in
            for c in 0..<3 {
                let m = mean[mean.count == 1 ? 0 : c], s = std[std.count == 1 ? 0 : c]
                let o = out + c * plane
                for i in 0..<plane { o[i] = (Float(p[3 * i + c]) / 255 - m) / s }
            }
        }
    }

    /// The whole transform: a float32 tensor [3, height, width].
    public func tensor(_ image: RGBImage) -> Tensor {
        let t = Tensor(zeros: .float32, shape: [3, height, width])
        normalise(resizeAndCrop(image), into: t.floatPointer)
        return t
    }

    /// Decodes an image file and transforms it: float32 [3, height, width].
    public func tensor(path: String) throws -> Tensor {
        tensor(try ImageDecoder.decode(path: path))
    }
}

extension Preprocessing {
    /// A Float from a file, as the decimal it was written as (0.9 stays 0.9, not 0.899999976).
    static func decimal(_ v: Float) -> Double { Double(String(v)) ?? Double(v) }

    /// Overrides this preprocessing with the `preprocess.*` and `input.size` entries of a `.cnx`'s
    /// metadata, where present.
    public func updated(metadata m: [String: MetadataValue]) -> Preprocessing {
        var p = self
        if let s = m[MetadataKey.inputSize]?.intsValue {
            if s.count == 2, s[0] > 0, s[1] > 0 { (p.height, p.width) = (Int(s[0]), Int(s[1])) }
            if s.count == 3, s[1] > 0, s[2] > 0 { (p.height, p.width) = (Int(s[1]), Int(s[2])) }
        }
        switch m[MetadataKey.cropPct] {
        case .float(let v)?: p.cropPct = Self.decimal(v)
        case .double(let v)?: p.cropPct = v
        default: break
        }
        if let v = m[MetadataKey.interpolation]?.stringValue, let i = Interpolation(rawValue: v.lowercased()) { p.interpolation = i }
        if let v = m[MetadataKey.mean]?.floatsValue, v.count == 3 { p.mean = v }
        if let v = m[MetadataKey.std]?.floatsValue, v.count == 3 { p.std = v }
        return p
    }

    /// Overrides this preprocessing with a timm `config.json` (its `pretrained_cfg`, or the same
    /// keys at the top level): `input_size`, `crop_pct`, `interpolation`, `mean`, `std`.
    public func updated(timmConfig path: String) throws -> Preprocessing {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CNXError("\(path): cannot read (\(error.localizedDescription))")
        }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CNXError("\(path): not a JSON object")
        }
        let cfg = root["pretrained_cfg"] as? [String: Any] ?? root
        var p = self
        if let s = cfg["input_size"] as? [NSNumber], s.count == 3, s[1].intValue > 0, s[2].intValue > 0 {
            (p.height, p.width) = (s[1].intValue, s[2].intValue)
        }
        if let v = cfg["crop_pct"] as? NSNumber, v.doubleValue > 0 { p.cropPct = v.doubleValue }
        if let v = cfg["interpolation"] as? String, let i = Interpolation(rawValue: v.lowercased()) { p.interpolation = i }
        if let v = cfg["mean"] as? [NSNumber], v.count == 3 { p.mean = v.map(\.floatValue) }
        if let v = cfg["std"] as? [NSNumber], v.count == 3 { p.std = v.map(\.floatValue) }
        return p
    }

    /// A one-line description: `224x224 from resize 256 (bicubic, crop_pct 0.875), mean [...], std [...]`.
    public var summary: String {
        let sample = resizedSize(width: 4 * width, height: 3 * height)
        let side = height == width ? "shorter side \(min(sample.width, sample.height))" : "\(sample.width)x\(sample.height)"
        func list(_ v: [Float]) -> String { "[" + v.map { String($0) }.joined(separator: ", ") + "]" }
        return "resize \(side) (\(interpolation.rawValue), crop_pct \(cropPct)), centre crop \(height)x\(width), mean \(list(mean)), std \(list(std))"
    }
}
