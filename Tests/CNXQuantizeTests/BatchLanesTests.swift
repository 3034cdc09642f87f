import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXRuntime
import CNXTestSupport
import XCTest

/// A batch of at least as many images as threads runs each thread's share of its images on that
/// thread alone (`FastExecutor.runImagesOnLanes`); the images past a multiple of the thread count
/// run as a batch of their own on every thread. Each image of such a batch must get PyTorch's
/// answer, and the same bits as when it runs alone, in every precision (a row's arithmetic does
/// not depend on its tile, its thread or the split of the layers between the threads).
final class BatchLanesTests: XCTestCase {
    /// `count` images: the case's own first image (PyTorch's answer known), then shifted and
    /// scaled copies of it (each image different, so a row put in the wrong place shows).
    private func batch(of x: Tensor, count: Int) -> Tensor {
        let image = x.count / x.shape[0]
        let first = x.floats(0..<image)
        var values: [Float] = []
        for i in 0..<count {
            let scale = [1, -1, 0.5, 1.5, 0.8, -0.7, 1.2][i % 7], shift = Float(i) * 0.05
            values += first.map { $0 * Float(scale) + shift }
        }
        return Tensor(floats: values, shape: [count] + x.shape.dropFirst())
    }

    /// The graph with its input's and outputs' first dimension a symbol: most fixtures were
    /// exported for one image, which their fused graph no longer depends on.
    private func anyBatch(_ graph: Graph) -> Graph {
        var g = graph
        for i in g.inputs.indices where g.inputs[i].shape?.isEmpty == false { g.inputs[i].shape![0] = .symbol("batch") }
        for i in g.outputs.indices where g.outputs[i].shape?.isEmpty == false { g.outputs[i].shape![0] = .symbol("batch") }
        return g
    }

    private func rows(_ y: Tensor) -> [[Float]] {
        let n = y.shape[0], per = y.count / n
        return (0..<n).map { y.floats($0 * per..<($0 + 1) * per) }
    }

    /// `model` on a batch against every image run alone by `alone` (one thread), bit for bit.
    private func checkBatch(
        _ model: Model, _ alone: Model, _ xs: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> [[Float]] {
        let y = try model.predict(xs)
        XCTAssertEqual(y.shape.first, xs.shape[0], what, file: file, line: line)
        let image = xs.count / xs.shape[0]
        for (i, row) in rows(y).enumerated() {
            let one = Tensor(floats: xs.floats(i * image..<(i + 1) * image), shape: [1] + xs.shape.dropFirst())
            let single = try alone.predict(one).floats
            XCTAssertEqual(
                row, single, "\(what): image \(i) of \(xs.shape[0]) off its own run by \(relativeError(row, single))", file: file,
                line: line)
        }
        return rows(y)
    }

    /// Every family in float32: batches of 2, 3, 5 and 7 on 2 and 3 threads (a batch of the thread
    /// count: every image on a thread of its own; otherwise a remainder on every thread). Each image
    /// equals its own run on one thread, and the first image PyTorch's answer.
    func testEveryFamilyInBatchesMatchesPyTorch() throws {
        var checked = 0
        for entry in try FamilyFixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.onnx)
            _ = try Pipeline.standard.run(&graph)
            graph = anyBatch(graph)
            let c = entry.cases[0]
            let x = try NPY.read(path: entry.path(c.input)), expected = try NPY.read(path: entry.path(c.expected))
            let alone = try Model(graph: graph, threads: 1)
            let firstExpected = expected.floats(0..<(expected.count / expected.shape[0]))
            for threads in [2, 3] {
                let model = try Model(graph: graph, threads: threads)
                for count in [2, 3, 5, 7] {
                    let what = "\(entry.name), batch \(count), \(threads) threads"
                    let ys = try checkBatch(model, alone, batch(of: x, count: count), what)
                    let err = relativeError(ys[0], firstExpected)
                    XCTAssertLessThanOrEqual(err, 1e-5, "\(what): first image \(err) off PyTorch")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 30 * 8)
    }

    /// The fixtures whose PyTorch answers are for a batch: on more threads than images, as many,
    /// and fewer.
    func testRecordedBatchesOnAnyThreadCount() throws {
        var batches = 0
        for entry in try FamilyFixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.onnx)
            _ = try Pipeline.standard.run(&graph)
            for c in entry.cases {
                let x = try NPY.read(path: entry.path(c.input)), expected = try NPY.read(path: entry.path(c.expected))
                guard x.shape[0] > 1 else { continue }
                batches += 1
                for threads in [1, 2, 3, 4] {
                    let y = try Model(graph: graph, threads: threads).predict(x)
                    XCTAssertEqual(y.shape, expected.shape)
                    let err = relativeError(y.floats, expected.floats)
                    XCTAssertLessThanOrEqual(err, 1e-5, "\(entry.name) \(c.input), \(threads) threads: \(err) off PyTorch")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(batches, 2)
    }

    /// int8 and bfloat16 files: each image of a batch of 5 on 2 threads as when it runs alone.
    func testQuantizedBatches() throws {
        for name in ["timm_linear_op17", "v2_op17", "reference_op13"] {
            let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
            var graph = try ONNXReader.load(path: entry.model)
            _ = try Pipeline.standard.run(&graph)
            graph = anyBatch(graph)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            let q = try Quantizer.quantize(graph, calibration: gaussian([8] + Array(x.shape.dropFirst()), seed: 5))
            var half = graph
            try HalfPrecisionLowering.apply(&half, to: .bfloat16)
            for (label, g) in [("int8", q.graph), ("bfloat16", half)] {
                let xs = batch(of: x, count: 5)
                _ = try checkBatch(
                    try Model(graph: g, threads: 2), try Model(graph: g, threads: 1), xs, "\(name) \(label)")
            }
        }
    }
}
