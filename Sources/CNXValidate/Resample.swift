import Foundation

/// The resampling filters of `Resample`, with PIL's names, codes and supports.
public enum Interpolation: String, CaseIterable, Sendable {
    case nearest
    case box
    case bilinear
    case hamming
    case bicubic
    case lanczos

    /// PIL's `Image.Resampling` code (what a transformers `preprocessor_config.json` stores as
    /// `resample`): 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming.
    public init?(pilCode: Int) {
        switch pilCode {
        case 0: self = .nearest
        case 1: self = .lanczos
        case 2: self = .bilinear
        case 3: self = .bicubic
        case 4: self = .box
        case 5: self = .hamming
        default: return nil
        }
    }

    /// The names, for messages: "nearest, box, bilinear, hamming, bicubic, lanczos".
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Half-width of the filter at scale 1, in input pixels (nearest does not convolve).
    var support: Double {
        switch self {
        case .nearest, .box: return 0.5
        case .bilinear, .hamming: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    /// The filter's weight at signed distance `x`, as Pillow's `Resample.c` computes it (box is
    /// the half-open window (-0.5, 0.5]; hamming's constants are the float literals 0.54f and
    /// 0.46f; bicubic has a = -0.5; lanczos is sinc(x) sinc(x / 3) on [-3, 3)).
    func weight(_ x: Double) -> Double {
        switch self {
        case .nearest, .box:
            return x > -0.5 && x <= 0.5 ? 1 : 0
        case .bilinear:
            let x = abs(x)
            return x < 1 ? 1 - x : 0
        case .hamming:
            let x = abs(x)
            if x == 0 { return 1 }
            if x >= 1 { return 0 }
            let t = x * Double.pi
            return sin(t) / t * (Double(Float(0.54)) + Double(Float(0.46)) * cos(t))
        case .bicubic:
            let x = abs(x), a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            guard x >= -3 && x < 3 else { return 0 }
            return Self.sinc(x) * Self.sinc(x / 3)
        }
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let t = x * Double.pi
        return sin(t) / t
    }
}

/// Image resizing that gives the same bytes as PIL's `Image.resize` on 8-bit RGB (what
/// torchvision's `Resize` calls on a PIL image), following the algorithm of Pillow's
/// `Resample.c`:
///
/// - separable: a horizontal pass, rounded to 8 bits, then a vertical pass, each done only when
///   that side changes size;
/// - antialiased: when shrinking by a factor s > 1 the filter is stretched by s (its support
///   grows to s x support and distances are divided by s);
/// - output pixel i samples around centre (i + 0.5) x in/out; the taps run from
///   trunc(centre - support + 0.5) to trunc(centre + support + 0.5), clipped to the image, with
///   weights filter((j - centre + 0.5) x (1 / s)) normalised to sum to 1;
/// - weights in fixed point with 22 fractional bits, rounded half away from zero; each sum starts
///   at one half and is shifted right by 22, then clamped to 0...255;
/// - nearest is not a convolution: Pillow maps it to an affine scale (`ImagingScaleAffine`),
///   output column x reading input column trunc(a/2 + x a) with a = in/out, the position
///   accumulated in double precision (x0 = a/2, then += a), and likewise for rows.
public enum Resample {
    static let precisionBits = 22

    /// Taps of one pass: for each output position, the first input index and its weights.
    struct Taps {
        var start: [Int]
        var count: [Int]
        var width: Int
        var weights: [Int32]
    }

    static func taps(input: Int, output: Int, filter: Interpolation) -> Taps {
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let width = Int(support.rounded(.up)) * 2 + 1
        var taps = Taps(start: [], count: [], width: width, weights: [Int32](repeating: 0, count: output * width))
        var w = [Double](repeating: 0, count: width)
        let reciprocal = 1 / filterScale
        for i in 0..<output {
            let centre = (Double(i) + 0.5) * scale
            let lo = max(Int(centre - support + 0.5), 0)
            let hi = min(Int(centre + support + 0.5), input)
            let n = max(hi - lo, 0)
            var total = 0.0
            for j in 0..<n {
                w[j] = filter.weight((Double(j + lo) - centre + 0.5) * reciprocal)
                total += w[j]
            }
            for j in 0..<n {
                let v = total != 0 ? w[j] / total : w[j]
                let fixed = v * Double(1 << precisionBits)
                taps.weights[i * width + j] = Int32(v < 0 ? (fixed - 0.5).rounded(.towardZero) : (fixed + 0.5).rounded(.towardZero))
            }
            taps.start.append(lo)
            taps.count.append(n)
        }
        return taps
    }

    /// Resizes to exactly `width` x `height`.
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: Interpolation) -> RGBImage {
        precondition(width > 0 && height > 0)
        if width == image.width && height == image.height { return image }
        if filter == .nearest { return nearest(image, width: width, height: height) }
        var current = image
        if width != current.width { current = horizontal(current, width: width, filter: filter) }
        if height != current.height { current = vertical(current, height: height, filter: filter) }
        return current
    }

    /// The source index of each output position for nearest: Pillow's accumulated position.
    static func nearestIndices(input: Int, output: Int) -> [Int] {
        let a = Double(input) / Double(output)
        var position = a * 0.5
        var indices = [Int](repeating: 0, count: output)
        for i in 0..<output {
            indices[i] = min(max(Int(position), 0), input - 1)  // always in range for a plain resize
            position += a
        }
        return indices
    }

    static func nearest(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        let columns = nearestIndices(input: image.width, output: width)
        let rows = nearestIndices(input: image.height, output: height)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (y, row) in rows.enumerated() {
                    let s = row * image.width * 3, d = y * width * 3
                    for (x, column) in columns.enumerated() {
                        dst[d + 3 * x] = src[s + 3 * column]
                        dst[d + 3 * x + 1] = src[s + 3 * column + 1]
                        dst[d + 3 * x + 2] = src[s + 3 * column + 2]
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    static func clip(_ sum: Int32) -> UInt8 {
        let v = sum >> Int32(precisionBits)
        return UInt8(clamping: v)
    }

    static func horizontal(_ image: RGBImage, width: Int, filter: Interpolation) -> RGBImage {
        let t = taps(input: image.width, output: width, filter: filter)
        let h = image.height, inW = image.width
        var out = [UInt8](repeating: 0, count: width * h * 3)
        let half = Int32(1) << Int32(precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                t.weights.withUnsafeBufferPointer { k in
                    for y in 0..<h {
                        let row = y * inW * 3
                        for x in 0..<width {
                            var r = half, g = half, b = half
                            let start = t.start[x], kk = x * t.width
                            for j in 0..<t.count[x] {
                                let p = row + (start + j) * 3, w = k[kk + j]
                                r &+= Int32(src[p]) &* w
                                g &+= Int32(src[p + 1]) &* w
                                b &+= Int32(src[p + 2]) &* w
                            }
                            let o = (y * width + x) * 3
                            dst[o] = clip(r)
                            dst[o + 1] = clip(g)
                            dst[o + 2] = clip(b)
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: h, pixels: out)
    }

    static func vertical(_ image: RGBImage, height: Int, filter: Interpolation) -> RGBImage {
        let t = taps(input: image.height, output: height, filter: filter)
        let w = image.width
        let rowLength = w * 3
        var out = [UInt8](repeating: 0, count: rowLength * height)
        let half = Int32(1) << Int32(precisionBits - 1)
        var sums = [Int32](repeating: 0, count: rowLength)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                t.weights.withUnsafeBufferPointer { k in
                    sums.withUnsafeMutableBufferPointer { acc in
                        for y in 0..<height {
                            for i in 0..<rowLength { acc[i] = half }
                            let start = t.start[y], kk = y * t.width
                            for j in 0..<t.count[y] {
                                let row = (start + j) * rowLength, wt = k[kk + j]
                                for i in 0..<rowLength { acc[i] &+= Int32(src[row + i]) &* wt }
                            }
                            let o = y * rowLength
                            for i in 0..<rowLength { dst[o + i] = clip(acc[i]) }
                        }
                    }
                }
            }
        }
        return RGBImage(width: w, height: height, pixels: out)
    }
}
