import CJPEG
import CNXGraph
import Foundation

/// Small JPEG pictures of samples, as `data:` URIs the HTML report inlines.
public enum Thumbnail {
    /// The longest side of a thumbnail, in pixels (smaller images are kept at their size).
    public static let maxSide = 112

    /// The thumbnail of sample `index` of `data`: the image file itself, scaled down, or for a
    /// `.npy` batch the preprocessed sample, its values stretched to 0...255.
    public static func dataURI(sample index: Int, of data: Dataset) throws -> String {
        let image: RGBImage
        if let files = data.files {
            image = try ImageDecoder.decode(path: files[index])
        } else {
            image = fromTensor(try data.batch(index..<index + 1))
        }
        return try dataURI(image)
    }

    /// `image` scaled to at most `maxSide` and encoded as a JPEG data URI.
    public static func dataURI(_ image: RGBImage, quality: Int = 82) throws -> String {
        let small = downscaled(image, maxSide: maxSide)
        return "data:image/jpeg;base64," + (try jpeg(small, quality: quality)).base64EncodedString()
    }

    /// JPEG bytes of an RGB image.
    public static func jpeg(_ image: RGBImage, quality: Int) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = image.pixels.withUnsafeBufferPointer { p in
            cnx_jpeg_encode_rgb(
                p.baseAddress, Int32(image.width), Int32(image.height), Int32(quality), &out, &size, &message, message.count)
        }
        guard status == 0, let out else { throw CNXError("cannot encode a thumbnail as JPEG: \(String(cString: message))") }
        defer { free(out) }
        return Data(bytes: out, count: Int(size))
    }

    /// One sample [1, 3, H, W] (or [3, H, W]) of float32 values as an image: each value mapped
    /// linearly from the sample's range to 0...255, the same map for the three channels.
    static func fromTensor(_ t: Tensor) -> RGBImage {
        let h = t.shape[t.shape.count - 2], w = t.shape[t.shape.count - 1]
        let plane = h * w
        let v = t.withUnsafeFloats { Array($0.prefix(3 * plane)) }
        var lo = Float.infinity, hi = -Float.infinity
        for x in v where x.isFinite {
            lo = min(lo, x)
            hi = max(hi, x)
        }
        let scale: Float = hi > lo ? 255 / (hi - lo) : 0
        var pixels = [UInt8](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 {
                let x = v[c * plane + i]
                pixels[3 * i + c] = x.isFinite ? UInt8(max(0, min(255, ((x - lo) * scale).rounded()))) : 0
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// `image` shrunk (area average) so that its longer side is at most `maxSide`.
    static func downscaled(_ image: RGBImage, maxSide: Int) -> RGBImage {
        let longer = max(image.width, image.height)
        guard longer > maxSide else { return image }
        let w = max(1, image.width * maxSide / longer), h = max(1, image.height * maxSide / longer)
        var out = [UInt8](repeating: 0, count: w * h * 3)
        let sx = Double(image.width) / Double(w), sy = Double(image.height) / Double(h)
        image.pixels.withUnsafeBufferPointer { src in
            for y in 0..<h {
                let y0 = Int(Double(y) * sy), y1 = max(y0 + 1, min(image.height, Int((Double(y + 1) * sy).rounded(.up))))
                for x in 0..<w {
                    let x0 = Int(Double(x) * sx), x1 = max(x0 + 1, min(image.width, Int((Double(x + 1) * sx).rounded(.up))))
                    var sum = (0, 0, 0)
                    for yy in y0..<y1 {
                        var p = (yy * image.width + x0) * 3
                        for _ in x0..<x1 {
                            sum.0 += Int(src[p])
                            sum.1 += Int(src[p + 1])
                            sum.2 += Int(src[p + 2])
                            p += 3
                        }
                    }
                    let n = (y1 - y0) * (x1 - x0)
                    let o = (y * w + x) * 3
                    out[o] = UInt8((sum.0 + n / 2) / n)
                    out[o + 1] = UInt8((sum.1 + n / 2) / n)
                    out[o + 2] = UInt8((sum.2 + n / 2) / n)
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}
