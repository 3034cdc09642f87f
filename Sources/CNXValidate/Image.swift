import CJPEG
import CNXGraph
import CPNG
import Foundation

/// An 8-bit RGB image: `height` rows of `width` pixels, 3 bytes a pixel (R, G, B), row-major.
public struct RGBImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3)
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Reads JPEG (libjpeg-turbo) and PNG (libpng) files into RGB, decoding as PIL's
/// `Image.open(path).convert("RGB")` does, so that preprocessing can match torchvision.
public enum ImageDecoder {
    /// File extensions of the images a folder dataset takes (torchvision's `IMG_EXTENSIONS`
    /// lists more; those files are taken too and reported when they cannot be decoded).
    public static let extensions: Set<String> = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"]

    /// Decodes a JPEG or PNG file, chosen by its first bytes.
    /// - Throws: `CNXError` naming the file and what is wrong with it.
    public static func decode(path: String) throws -> RGBImage {
        let file = try MappedFile(path: path)
        do {
            return try file.withUnsafeBytes { try decode($0) }
        } catch let e as CNXError {
            throw e.inFile(path)
        }
    }

    /// Decodes a JPEG or PNG held in memory.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RGBImage {
        guard let base = bytes.baseAddress, bytes.count >= 8 else {
            throw CNXError("not an image: \(bytes.count) bytes")
        }
        let head = [UInt8](bytes.prefix(8))
        let p = base.assumingMemoryBound(to: UInt8.self)
        var pixels: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32
        if head.starts(with: [0xFF, 0xD8, 0xFF]) {
            status = cnx_jpeg_decode_rgb(p, UInt(bytes.count), &pixels, &width, &height, &message, message.count)
        } else if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] {
            status = cnx_png_decode_rgb(p, bytes.count, &pixels, &width, &height, &message, message.count)
        } else {
            let hex = head.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw CNXError("not a JPEG or PNG file (first bytes \(hex) at byte 0)")
        }
        guard status == 0, let pixels else {
            let kind = head[0] == 0xFF ? "JPEG" : "PNG"
            throw CNXError("cannot decode \(kind): \(String(cString: message))")
        }
        defer { free(pixels) }
        let count = Int(width) * Int(height) * 3
        return RGBImage(width: Int(width), height: Int(height), pixels: Array(UnsafeBufferPointer(start: pixels, count: count)))
    }
}
