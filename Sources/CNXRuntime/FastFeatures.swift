import CKernels
import CNXGraph
import CNXReference

extension FastExecutor {
    /// cnx.Features: a feature map leaving the network. Each lane takes whole image rows: the
    /// norm over channels (the C norm kernels) into its scratch, then the rows' pixels written
    /// into the NCHW output's channel planes.
    func features(_ node: Node, _ args: [Tensor?], scratch: [Scratch]) throws -> Tensor {
        guard let x = args.first ?? nil, x.dtype == .float32, x.shape.count == 4 else {
            throw CNXError("input must be a float32 NHWC map")
        }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        func vector(_ i: Int) throws -> Tensor? {
            guard i < args.count, let t = args[i] else { return nil }
            guard t.dtype == .float32, t.count == c else { throw CNXError("input \(i) must hold \(c) float32 values") }
            return t
        }
        let normParameters = [try vector(1), try vector(2)]
        let payload = try FeaturesPayload(node)
        let kind = payload.kind, eps = payload.epsilon
        let y = Tensor(zeros: .float32, shape: [n, c, h, w])
        let plane = h * w
        x.withUnsafeFloats { xBuffer in
            y.withUnsafeMutableFloats { yBuffer in
                withFloatPointers(normParameters) { ptr in
                    let (gamma, beta) = (ptr[0], ptr[1])
                    for b in 0..<n {
                        let xb = xBuffer.baseAddress! + b * plane * c, yb = yBuffer.baseAddress! + b * plane * c
                        parallelChunks(h, threads: min(threads, max(1, h * w * c / 16384))) { y0, y1, lane in
                            let rows = (y1 - y0) * w
                            var source = xb + y0 * w * c
                            if kind != .none {
                                let t = scratch[lane].buffer(2, floats: rows * c)
                                FusedAttributes.normRows(kind, source, rows: rows, c: c, eps: eps, gamma: gamma, beta: beta, into: t)
                                source = UnsafePointer(t)
                            }
                            cnx_rows_to_planes_f32(source, Int64(rows), Int64(c), yb + y0 * w, Int64(plane))
                        }
                    }
                }
            }
        }
        return y
    }
}
