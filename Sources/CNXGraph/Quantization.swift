/// How a tensor's stored integers stand for real values (Formats/CNX.md, the tensor table's
/// `cnx_quantization`): `real = scales[c] · (q - zeroPoints[c])`, `c` the index along `axis`.
public struct Quantization: Equatable, Sendable {
    /// The channel axis the scales run along.
    public var axis: Int
    /// One scale per channel (float32, positive and finite).
    public var scales: [Float]
    /// One zero point per channel, or nil: symmetric (all zero).
    public var zeroPoints: [Int32]?

    public init(axis: Int, scales: [Float], zeroPoints: [Int32]? = nil) {
        self.axis = axis
        self.scales = scales
        self.zeroPoints = zeroPoints
    }
}
