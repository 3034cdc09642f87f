import CNXFormat
import CNXGraph
import Foundation

/// How an image becomes a model input. Two conventions are reproduced exactly:
///
/// timm's and torchvision's evaluation transforms (the default):
///
///     Resize(floor(size / crop_pct), interpolation)   # PIL, shorter side, antialiased
///     CenterCrop(size)                                # offset round((L - size) / 2), half to even
///     ToTensor()                                      # x / 255 in float32
///     Normalize(mean, std)                            # (x - mean) / std
///
/// For a non-square input size (height != width) the resize goes to exactly
/// (floor(height / crop_pct), floor(width / crop_pct)), as timm does.
///
/// transformers' `ConvNextImageProcessor` (its PIL backend; `resizeMode`, `cropOffset` and
/// `rescaleFactor` set by `TransformersPreprocessing`): below 384 the same shorter-side resize to
/// int(size / crop_pct) and a centre crop whose offset is floor((L - size) / 2); at 384 and above a
/// resize to a square size x size with no crop; then float32(float64(x) x rescale_factor) and
/// (x - mean) / std in float32.
public struct Preprocessing: Equatable, Sendable {
    /// How the image is brought to the input size.
    public enum ResizeMode: String, CaseIterable, Sendable {
        /// Resize the shorter side to floor(size / crop_pct), then centre-crop size x size.
        case shorterSide = "shorter_side"
        /// Resize to exactly height x width, whatever the aspect ratio; no crop.
        case square
        /// No resize and no crop: images must already be height x width.
        case none
    }

    /// Where a centre crop starts when the resized side L is longer than the crop c, and where
    /// the image goes when it is shorter (zero padding around it).
    public enum CropOffset: String, CaseIterable, Sendable {
        /// torchvision's `CenterCrop`: round((L - c) / 2), half to even; a shorter image is padded
        /// with floor((c - L) / 2) zeros before it.
        case roundHalfEven = "round_half_even"
        /// transformers' `center_crop`: floor((L - c) / 2); a shorter image is padded with
        /// ceil((c - L) / 2) zeros before it.
        case floor
    }

    public var height: Int
    public var width: Int
    public var cropPct: Double
    public var interpolation: Interpolation
    public var mean: [Float]
    public var std: [Float]
    public var resizeMode: ResizeMode
    public var cropOffset: CropOffset
    /// nil: x / 255 in float32 (torchvision's `ToTensor`); a value r: float32(float64(x) x r)
    /// (transformers' `rescale`; r = 1 when it does not rescale).
    public var rescaleFactor: Double?

    public init(
        height: Int, width: Int, cropPct: Double, interpolation: Interpolation, mean: [Float], std: [Float],
        resizeMode: ResizeMode = .shorterSide, cropOffset: CropOffset = .roundHalfEven, rescaleFactor: Double? = nil
    ) {
        self.height = height
        self.width = width
        self.cropPct = cropPct
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
        self.resizeMode = resizeMode
        self.cropOffset = cropOffset
        self.rescaleFactor = rescaleFactor
    }

    /// What the published ImageNet weights expect (timm's defaults).
    public static let imagenet = Preprocessing(
        height: 224, width: 224, cropPct: 0.875, interpolation: .bicubic,
        mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// Checks the values make sense; the message names the setting.
    public func validate() throws {
        guard height >= 1, width >= 1 else { throw CNXError("preprocessing: size \(height)x\(width) must be positive") }
        guard cropPct > 0, cropPct.isFinite else { throw CNXError("preprocessing: crop_pct \(cropPct) must be positive") }
        guard mean.count == 3 || mean.count == 1 else { throw CNXError("preprocessing: mean needs 3 values (or 1), got \(mean.count)") }
        guard std.count == 3 || std.count == 1 else { throw CNXError("preprocessing: std needs 3 values (or 1), got \(std.count)") }
        guard mean.allSatisfy(\.isFinite) else { throw CNXError("preprocessing: mean \(mean) must be finite") }
        guard std.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw CNXError("preprocessing: std \(std) must be non-zero") }
        if let r = rescaleFactor, !(r.isFinite && r > 0) { throw CNXError("preprocessing: rescale factor \(r) must be positive") }
    }

    /// The size the resize produces for an image of `w` x `h`. Shorter side: the shorter side to
    /// s = floor(size / crop_pct), the longer to int(s x long / short) (torchvision's rule for an
    /// int size, and transformers'), or exact for a non-square input; square: the input size;
    /// none: the image's own size.
    public func resizedSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        switch resizeMode {
        case .none: return (w, h)
        case .square: return (width, height)
        case .shorterSide: break
        }
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
    /// - Throws: for `ResizeMode.none`, when the image is not already that size.
    public func resizeAndCrop(_ image: RGBImage) throws -> RGBImage {
        switch resizeMode {
        case .shorterSide:
            return centreCrop(resize(image))
        case .square:
            return resize(image)
        case .none:
            guard image.width == width && image.height == height else {
                throw CNXError(
                    "the image is \(image.width)x\(image.height); this model's preprocessing does not resize (do_resize false) and takes \(width)x\(height) images"
                )
            }
            return image
        }
    }

    /// The resize step alone: the size `resizedSize` gives, with PIL's resampling.
    public func resize(_ image: RGBImage) -> RGBImage {
        let (rw, rh) = resizedSize(width: image.width, height: image.height)
        if rw == image.width && rh == image.height { return image }
        return Resample.resize(image, width: rw, height: rh, filter: interpolation)
    }

    /// Where the window of length `crop` starts in a side of length `side` (negative: the side is
    /// shorter and sits -start zeros into the window).
    func cropStart(side: Int, crop: Int) -> Int {
        let d = side - crop
        switch cropOffset {
        case .floor:
            return d >= 0 ? d / 2 : -((-d + 1) / 2)  // floor(d / 2) for either sign
        case .roundHalfEven:
            if d >= 0 { return Int((Double(d) / 2).rounded(.toNearestOrEven)) }
            return -(-d / 2)  // torchvision pads floor(-d / 2) before
        }
    }

    /// A centre crop to `width` x `height`, padding with zeros where the image is smaller, the
    /// offsets as `cropOffset` says.
    public func centreCrop(_ image: RGBImage) -> RGBImage {
        if image.width == width && image.height == height { return image }
        let top = cropStart(side: image.height, crop: height), left = cropStart(side: image.width, crop: width)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        // Output columns whose source column lies inside the image.
        let x0 = max(0, -left), x1 = min(width, image.width - left)
        guard x1 > x0 else { return RGBImage(width: width, height: height, pixels: out) }
        for y in 0..<height {
            let sy = y + top
            guard sy >= 0 && sy < image.height else { continue }
            let src = (sy * image.width + left + x0) * 3
            out.replaceSubrange((y * width + x0) * 3..<(y * width + x1) * 3, with: image.pixels[src..<src + (x1 - x0) * 3])
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// The normalised value of each 8-bit level, per channel: 3 x 256 floats, computed exactly as
    /// the convention does it.
    public var levels: [Float] {
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let m = mean[mean.count == 1 ? 0 : c], s = std[std.count == 1 ? 0 : c]
            for v in 0..<256 {
                let x: Float
                if let r = rescaleFactor { x = Float(Double(v) * r) } else { x = Float(v) / 255 }
                table[c * 256 + v] = (x - m) / s
            }
        }
        return table
    }

    /// Writes the normalised CHW float32 values of an image that is already `width` x `height`.
    public func normalise(_ image: RGBImage, into out: UnsafeMutablePointer<Float>) {
        precondition(image.width == width && image.height == height)
        let plane = width * height
        let table = levels
        image.pixels.withUnsafeBufferPointer { p in
            table.withUnsafeBufferPointer { t in
                for c in 0..<3 {
                    let o = out + c * plane, lut = t.baseAddress! + c * 256
                    for i in 0..<plane { o[i] = lut[Int(p[3 * i + c])] }
                }
            }
        }
    }

    /// The whole transform: a float32 tensor [3, height, width].
    public func tensor(_ image: RGBImage) throws -> Tensor {
        let t = Tensor(zeros: .float32, shape: [3, height, width])
        let resized = try resizeAndCrop(image)
        t.withUnsafeMutableFloats { normalise(resized, into: $0.baseAddress!) }
        return t
    }

    /// Decodes an image file and transforms it: float32 [3, height, width].
    public func tensor(path: String) throws -> Tensor {
        do {
            return try tensor(try ImageDecoder.decode(path: path))
        } catch let e as CNXError {
            throw e.inFile(path)
        }
    }
}

extension Preprocessing {
    /// A Float from a file, as the decimal it was written as (0.9 stays 0.9, not 0.899999976).
    static func decimal(_ v: Float) -> Double { Double(String(v)) ?? Double(v) }

    /// Overrides this preprocessing with the `preprocess.*` and `input.size` entries of a `.cnx`'s
    /// metadata, where present. Metadata that states any `preprocess.*` value states a whole
    /// convention: its resize mode, crop offset and rescale factor take their defaults (timm's and
    /// torchvision's) unless it gives them.
    public func updated(metadata m: [String: MetadataValue]) -> Preprocessing {
        var p = self
        if m.keys.contains(where: { $0.hasPrefix("preprocess.") }) {
            p.resizeMode = m[MetadataKey.resizeMode]?.stringValue.flatMap(ResizeMode.init(rawValue:)) ?? .shorterSide
            p.cropOffset = m[MetadataKey.cropOffset]?.stringValue.flatMap(CropOffset.init(rawValue:)) ?? .roundHalfEven
            switch m[MetadataKey.rescaleFactor] {
            case .double(let v)?: p.rescaleFactor = v
            case .float(let v)?: p.rescaleFactor = Self.decimal(v)
            default: p.rescaleFactor = nil
            }
        }
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
        if ["input_size", "crop_pct", "interpolation", "mean", "std"].contains(where: { cfg[$0] != nil }) {
            // timm's convention (torchvision's transforms).
            (p.resizeMode, p.cropOffset, p.rescaleFactor) = (.shorterSide, .roundHalfEven, nil)
        }
        if let s = cfg["input_size"] as? [NSNumber], s.count == 3, s[1].intValue > 0, s[2].intValue > 0 {
            (p.height, p.width) = (s[1].intValue, s[2].intValue)
        }
        if let v = cfg["crop_pct"] as? NSNumber, v.doubleValue > 0 { p.cropPct = v.doubleValue }
        if let v = cfg["interpolation"] as? String, let i = Interpolation(rawValue: v.lowercased()) { p.interpolation = i }
        if let v = cfg["mean"] as? [NSNumber], v.count == 3 { p.mean = v.map(\.floatValue) }
        if let v = cfg["std"] as? [NSNumber], v.count == 3 { p.std = v.map(\.floatValue) }
        return p
    }

    /// A one-line description: `resize shorter side 256 (bicubic, crop_pct 0.875), centre crop
    /// 224x224, mean [...], std [...]`, with the transformers arithmetic named where it is used.
    public var summary: String {
        func list(_ v: [Float]) -> String { "[" + v.map { String($0) }.joined(separator: ", ") + "]" }
        var steps: [String]
        switch resizeMode {
        case .shorterSide:
            let sample = resizedSize(width: 4 * width, height: 3 * height)
            let side = height == width ? "shorter side \(min(sample.width, sample.height))" : "\(sample.width)x\(sample.height)"
            let offset = cropOffset == .floor ? ", offset floor((L - \(height)) / 2)" : ""
            steps = ["resize \(side) (\(interpolation.rawValue), crop_pct \(cropPct))", "centre crop \(height)x\(width)\(offset)"]
        case .square:
            steps = ["resize to \(height)x\(width) (\(interpolation.rawValue), no crop)"]
        case .none:
            steps = ["no resize (images must be \(height)x\(width))"]
        }
        if let r = rescaleFactor { steps.append("rescale x \(r) in float64") }
        return (steps + ["mean \(list(mean))", "std \(list(std))"]).joined(separator: ", ")
    }
}
