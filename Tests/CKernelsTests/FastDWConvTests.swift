import CKernels
import XCTest

final class FastDWConvTests: XCTestCase {
    static let channels = [1, 7, 13, 97, 96]
    static let sides = [1, 3, 7, 8, 14]

    private struct Case {
        let h, w, c, k: Int
        let x, weight: FloatBuffer
        let bias: FloatBuffer?

        init(h: Int, w: Int, c: Int, k: Int, bias: Bool, rng: inout LCG) {
            (self.h, self.w, self.c, self.k) = (h, w, c, k)
            x = FloatBuffer(rng.floats(h * w * c))
            weight = FloatBuffer(rng.floats(k * k * c))
            self.bias = bias ? FloatBuffer(rng.floats(c)) : nil
        }

        var label: String { "\(h)x\(w)x\(c) k \(k) bias \(bias != nil)" }

        /// Output rows [y0, y1) into `into` (a full image), by the dispatched kernel or the reference.
        func run(ref: Bool, into y: FloatBuffer, rows: Range<Int>? = nil) {
            let r = rows ?? 0..<h
            let call = ref ? cnx_dwconv_nhwc_rows_f32_ref : cnx_dwconv_nhwc_rows_f32
            call(
                x.const, Int64(h), Int64(w), Int64(c), Int64(k), weight.const, bias?.const, y.pointer,
                Int64(r.lowerBound), Int64(r.upperBound))
        }

        func output(ref: Bool) -> [Float] {
            let y = FloatBuffer(repeating: .nan, count: h * w * c)
            run(ref: ref, into: y)
            return y.array
        }

        /// Zero-padded convolution in Double, straight from the definition.
        func naive() -> [Float] {
            let pad = (k - 1) / 2
            var y = [Float](repeating: 0, count: h * w * c)
            for oy in 0..<h {
                for ox in 0..<w {
                    for ch in 0..<c {
                        var s = Double(bias?.pointer[ch] ?? 0)
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let iy = oy + ky - pad, ix = ox + kx - pad
                                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                s += Double(x.pointer[(iy * w + ix) * c + ch]) * Double(weight.pointer[(ky * k + kx) * c + ch])
                            }
                        }
                        y[(oy * w + ox) * c + ch] = Float(s)
                    }
                }
            }
            return y
        }
    }

    /// Every path, k = 7 (and 3, 5, and 9 for the general path), odd channel counts and small images.
    func testDWConvOddSizesMatchReference() {
        var rng = LCG(10)
        for k in [7, 3, 5, 9] {
            for c in Self.channels {
                for h in Self.sides {
                    for w in Self.sides {
                        let t = Case(h: h, w: w, c: c, k: k, bias: (h + w + c) % 2 == 0, rng: &rng)
                        let ref = t.output(ref: true)
                        forEachISA { _, name in
                            XCTAssertLessThan(relativeError(t.output(ref: false), ref), 1e-5, "\(name) \(t.label)")
                        }
                    }
                }
            }
        }
    }

    /// Widths past one register block (14 and 7 output pixels), the ConvNeXt-T stage shapes, and
    /// ConvNeXt-B 384's 512- and 1024-channel stages (channel counts a multiple of 512, or of 256
    /// on AVX2, run on a copy of their rows in groups of 8 output rows: heights 9, 17 and 20 end a
    /// group part-way; the others, 528 and 768 channels among them, run in place, 528 ending in a
    /// masked block).
    func testDWConvWideImagesMatchReference() {
        var rng = LCG(11)
        // 30 and 23 put a block's last input column exactly at the right edge (14- and 7-pixel blocks).
        for (h, w, c) in [
            (5, 29, 97), (9, 20, 33), (6, 30, 17), (5, 23, 16), (4, 56, 96), (28, 28, 192), (7, 7, 768), (56, 56, 96), (24, 24, 512),
            (12, 12, 1024), (17, 9, 528), (20, 3, 64), (9, 11, 256), (17, 5, 1536),
        ] {
            let t = Case(h: h, w: w, c: c, k: 7, bias: true, rng: &rng)
            let ref = t.output(ref: true)
            forEachISA { _, name in
                XCTAssertLessThan(relativeError(t.output(ref: false), ref), 1e-5, "\(name) \(t.label)")
            }
        }
    }

    func testDWConvReferenceMatchesNaive() {
        var rng = LCG(12)
        for (h, w, c, k) in [(1, 1, 1, 7), (3, 8, 13, 7), (7, 14, 7, 7), (8, 3, 97, 7), (6, 5, 3, 3), (5, 9, 4, 5), (4, 4, 2, 1)] {
            let t = Case(h: h, w: w, c: c, k: k, bias: true, rng: &rng)
            XCTAssertLessThan(relativeError(t.output(ref: true), t.naive()), 1e-5, t.label)
        }
    }

    /// Rows computed in pieces equal the whole image bit for bit, and rows outside the range
    /// are left alone.
    func testDWConvRowPiecesEqualWhole() {
        var rng = LCG(13)
        for (h, w, c) in [(14, 14, 97), (8, 7, 13), (7, 8, 96), (3, 3, 1), (1, 14, 7), (20, 9, 512), (25, 5, 33)] {
            let t = Case(h: h, w: w, c: c, k: 7, bias: true, rng: &rng)
            forEachISA { _, name in
                let whole = t.output(ref: false)
                let pieces = FloatBuffer(repeating: .nan, count: h * w * c)
                var cuts = [0, h / 3, h / 2, h - 1, h].filter { $0 >= 0 && $0 <= h }
                cuts = Array(Set(cuts)).sorted()
                for (lo, hi) in zip(cuts, cuts.dropFirst()) {
                    let probe = FloatBuffer(repeating: -7, count: h * w * c)
                    t.run(ref: false, into: probe, rows: lo..<hi)
                    for i in 0..<(h * w * c) where i / (w * c) < lo || i / (w * c) >= hi {
                        XCTAssertEqual(probe.pointer[i], -7, "\(name) \(t.label) rows \(lo)..<\(hi) touched \(i)")
                    }
                    t.run(ref: false, into: pieces, rows: lo..<hi)
                }
                XCTAssertEqual(pieces.array, whole, "\(name) \(t.label)")
            }
        }
    }
}
