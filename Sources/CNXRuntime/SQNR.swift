import CNXGraph
import Foundation

/// Signal-to-quantization-noise ratio in dB: 10 log10(signal / noise), where signal is the sum
/// of the reference's squares and noise the sum of the squared differences from it.
///
/// The project's one convention for the edge cases: zero noise (the outputs are identical) is
/// +infinity, not a large stand-in value, so that "identical" is never mistaken for a figure;
/// zero signal and zero noise (both all zero) is 0. Reports print infinity as such and JSON
/// writes it as null.
public func sqnr(signal: Double, noise: Double) -> Double {
    if noise == 0 { return signal == 0 ? 0 : .infinity }
    return 10 * log10(signal / noise)
}

/// The SQNR of `x` against the reference `ref` (float32 tensors, compared element by element
/// over the shorter of the two).
public func sqnr(_ x: Tensor, _ ref: Tensor) -> Double {
    x.withUnsafeFloats { a in
        ref.withUnsafeFloats { b in
            var signal = 0.0, noise = 0.0
            for i in 0..<min(a.count, b.count) {
                let r = Double(b[i]), d = Double(a[i]) - r
                signal += r * r
                noise += d * d
            }
            return sqnr(signal: signal, noise: noise)
        }
    }
}
