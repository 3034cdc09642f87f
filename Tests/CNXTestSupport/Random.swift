import Foundation

/// Standard-normal samples (Box-Muller over a fixed-seed linear congruential generator), drawn
/// like the fixtures' test inputs: for calibration data and probes that must be the same on
/// every run.
public func standardNormal(count: Int, seed: UInt64) -> [Float] {
    var state = seed
    func uniform() -> Double {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (Double(state >> 11) + 0.5) / Double(1 << 53)
    }
    var values = [Float]()
    values.reserveCapacity(count)
    while values.count < count {
        let u1 = uniform(), u2 = uniform()
        values.append(Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)))
    }
    return values
}
