import CNXGraph

/// numpy-style broadcasting of two shapes; nil when they are incompatible.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// Row-major strides of `shape` seen through a broadcast to `target` (0 where it is repeated).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let offset = target.count - shape.count
    var strides = [Int](repeating: 0, count: target.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i + offset] = shape[i] == 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// Calls `body(offsetA, offsetB, outOffset, innerCount, innerStrideA, innerStrideB)` once per
/// row of the output's last axis, walking every other axis with an odometer.
func forEachBroadcastRow(
    _ out: [Int], _ sa: [Int], _ sb: [Int],
    _ body: (Int, Int, Int, Int, Int, Int) -> Void
) {
    let rank = out.count
    if rank == 0 {
        body(0, 0, 0, 1, 0, 0)
        return
    }
    let inner = out[rank - 1]
    let rows = out.dropLast().reduce(1, *)
    if rows == 0 || inner == 0 { return }
    var index = [Int](repeating: 0, count: max(rank - 1, 0))
    var oa = 0, ob = 0
    for row in 0..<rows {
        body(oa, ob, row * inner, inner, sa[rank - 1], sb[rank - 1])
        // Advance the odometer over the outer axes.
        var axis = rank - 2
        while axis >= 0 {
            index[axis] += 1
            oa += sa[axis]
            ob += sb[axis]
            if index[axis] < out[axis] { break }
            oa -= sa[axis] * out[axis]
            ob -= sb[axis] * out[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}
