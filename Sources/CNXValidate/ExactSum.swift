import Foundation

/// A sum of doubles kept exactly, so that it does not depend on the order of the additions:
/// the figures of a validation split into shards and merged are bit for bit those of the same
/// validation run in one piece.
///
/// Every finite double is an integer multiple of 2^-1074. The sum is held as one signed integer
/// in units of 2^-1088, two's complement over `limbCount` 64-bit limbs (2304 bits): room for
/// 2^40 additions of the largest finite double. `value` rounds the exact sum to the nearest
/// double (ties to even), the same for every order of the same additions. Infinities and NaN
/// are counted apart: any NaN, or infinities of both signs, give NaN; one sign gives that
/// infinity.
public struct ExactSum: Equatable, Sendable {
    static let limbCount = 36
    /// Bit position of 2^0 in the integer.
    static let unitBit = 1088

    private(set) var limbs = [UInt64](repeating: 0, count: ExactSum.limbCount)
    private(set) var nans = 0
    private(set) var positiveInfinities = 0
    private(set) var negativeInfinities = 0

    public init() {}

    public mutating func add(_ x: Double) {
        if x.isNaN { nans += 1; return }
        if x.isInfinite {
            if x > 0 { positiveInfinities += 1 } else { negativeInfinities += 1 }
            return
        }
        if x == 0 { return }
        // x = significand * 2^exponent with an integer significand below 2^53.
        let bits = x.bitPattern
        let biased = Int((bits >> 52) & 0x7FF)
        var significand = bits & ((1 << 52) - 1)
        var exponent: Int
        if biased == 0 {
            exponent = -1074
        } else {
            significand |= 1 << 52
            exponent = biased - 1075
        }
        let position = exponent + Self.unitBit  // >= 14
        let limb = position / 64, shift = UInt64(position % 64)
        let low = significand << shift
        let high = shift == 0 ? 0 : significand >> (64 - shift)
        if x > 0 { addMagnitude(low, high, at: limb) } else { subtractMagnitude(low, high, at: limb) }
    }

    /// Adds every addition of `other`.
    public mutating func add(_ other: ExactSum) {
        var carry: UInt64 = 0
        for i in 0..<Self.limbCount {
            let (s1, o1) = limbs[i].addingReportingOverflow(other.limbs[i])
            let (s2, o2) = s1.addingReportingOverflow(carry)
            limbs[i] = s2
            carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
        }
        nans += other.nans
        positiveInfinities += other.positiveInfinities
        negativeInfinities += other.negativeInfinities
    }

    private mutating func addMagnitude(_ low: UInt64, _ high: UInt64, at index: Int) {
        ripple(low, high, at: index) { $0.addingReportingOverflow($1) }
    }

    private mutating func subtractMagnitude(_ low: UInt64, _ high: UInt64, at index: Int) {
        ripple(low, high, at: index) { $0.subtractingReportingOverflow($1) }
    }

    /// Applies `op` (add or subtract with overflow) of the two-limb value `high:low` at limb
    /// `index`, rippling the carry (or borrow) up through the limbs.
    @inline(__always)
    private mutating func ripple(
        _ low: UInt64, _ high: UInt64, at index: Int,
        _ op: (UInt64, UInt64) -> (partialValue: UInt64, overflow: Bool)
    ) {
        let first = op(limbs[index], low)
        limbs[index] = first.partialValue
        var carry: UInt64 = first.overflow ? 1 : 0
        var i = index + 1
        var operand = high
        while i < Self.limbCount && (operand != 0 || carry != 0) {
            let (r1, o1) = op(limbs[i], operand)
            let (r2, o2) = op(r1, carry)
            limbs[i] = r2
            carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
            operand = 0
            i += 1
        }
    }

    /// The exact sum rounded to the nearest double, ties to even.
    public var value: Double {
        if nans > 0 || (positiveInfinities > 0 && negativeInfinities > 0) { return .nan }
        if positiveInfinities > 0 { return .infinity }
        if negativeInfinities > 0 { return -.infinity }
        var magnitude = limbs
        let negative = magnitude[Self.limbCount - 1] >> 63 == 1
        if negative {
            // Two's complement negation.
            var carry: UInt64 = 1
            for i in 0..<Self.limbCount {
                let (s, o) = (~magnitude[i]).addingReportingOverflow(carry)
                magnitude[i] = s
                carry = o ? 1 : 0
            }
        }
        guard let top = magnitude.lastIndex(where: { $0 != 0 }) else { return 0 }
        let highest = top * 64 + (63 - magnitude[top].leadingZeroBitCount)
        func bit(_ p: Int) -> UInt64 { p < 0 ? 0 : (magnitude[p / 64] >> UInt64(p % 64)) & 1 }
        // The 53 bits from `highest` down (fewer when the sum is that small: then it is exact).
        let lowest = max(highest - 52, 0)
        var significand: UInt64 = 0
        for p in stride(from: highest, through: lowest, by: -1) { significand = significand << 1 | bit(p) }
        var exponent = lowest - Self.unitBit
        if lowest > 0 {
            let round = bit(lowest - 1)
            var sticky = false
            for p in 0..<(lowest - 1) where bit(p) == 1 { sticky = true; break }
            if round == 1 && (sticky || significand & 1 == 1) {
                significand += 1
                if significand == 1 << 53 { significand >>= 1; exponent += 1 }
            }
        }
        let result = Double(sign: negative ? .minus : .plus, exponent: exponent, significand: Double(significand))
        return result
    }

    // MARK: - Text form (validation parts)

    /// `[limbs as 16 hex digits each, most significant first, leading zero limbs dropped], nans,
    /// +inf, -inf`, as a compact string: "hex;nans;pinf;ninf".
    public var text: String {
        let firstUsed = limbs.lastIndex(where: { $0 != 0 }) ?? 0
        let hex = (0...firstUsed).reversed().map { String(format: "%016llx", limbs[$0]) }.joined()
        return "\(hex);\(nans);\(positiveInfinities);\(negativeInfinities)"
    }

    public init?(text: String) {
        let fields = text.split(separator: ";", omittingEmptySubsequences: false)
        guard fields.count == 4, let n = Int(fields[1]), let p = Int(fields[2]), let m = Int(fields[3]), n >= 0, p >= 0, m >= 0 else {
            return nil
        }
        let hex = Array(fields[0].utf8)
        guard !hex.isEmpty, hex.count % 16 == 0, hex.count / 16 <= Self.limbCount else { return nil }
        var limbs = [UInt64](repeating: 0, count: Self.limbCount)
        let count = hex.count / 16
        for i in 0..<count {
            guard let v = UInt64(String(decoding: hex[(i * 16)..<((i + 1) * 16)], as: UTF8.self), radix: 16) else { return nil }
            limbs[count - 1 - i] = v
        }
        self.limbs = limbs
        nans = n
        positiveInfinities = p
        negativeInfinities = m
    }
}
