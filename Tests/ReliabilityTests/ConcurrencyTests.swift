import CNXGraph
import CNXIO
import CNXRuntime
import CNXTestSupport
import Foundation
import XCTest

/// One loaded `Model` serves many threads at once: the same outputs as serial runs, bit for bit.
final class ConcurrencyTests: XCTestCase {
    func testEightThreadsPredictingAtOnceMatchSerialRunsBitForBit() throws {
        let converted = try ConvertedFixture.get()
        let model = try Model(path: converted.cnx)
        let x = try NPY.read(path: converted.entry.path(converted.entry.cases[0].input))
        // Three different inputs, so that one thread's activations leaking into another's show.
        let inputs: [Tensor] = [x, scaled(x, by: -0.5), scaled(x, by: 1.75)]
        let serial = try inputs.map { try model.predict($0).floats }
        XCTAssertNotEqual(serial[0], serial[1])

        let threadCount = 8, iterations = 12
        let start = DispatchSemaphore(value: 0), done = DispatchGroup()
        let results = Results()
        var threads: [Thread] = []
        for t in 0..<threadCount {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                start.wait()
                // Half the threads keep one workspace across calls, half let predict make its own.
                let workspace = t % 2 == 0 ? model.makeWorkspace() : nil
                for i in 0..<iterations {
                    let which = (t + i) % inputs.count
                    do {
                        let y = try model.predict(inputs[which], workspace: workspace).floats
                        let same =
                            y.count == serial[which].count
                            && zip(y, serial[which]).allSatisfy { $0.bitPattern == $1.bitPattern }
                        results.record(same ? nil : "thread \(t) iteration \(i) input \(which): differs from the serial run")
                    } catch {
                        results.record("thread \(t) iteration \(i): \(error)")
                    }
                }
            }
            thread.stackSize = 8 << 20
            threads.append(thread)
            thread.start()
        }
        // All eight are started before any predicts.
        for _ in 0..<threadCount { start.signal() }
        XCTAssertEqual(done.wait(timeout: .now() + 600), .success, "threads did not finish")
        let (runs, failures) = results.snapshot()
        XCTAssertEqual(failures, [])
        XCTAssertEqual(runs, threadCount * iterations)
    }

    /// What the threads report, behind a lock.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var runs = 0
        private var failures: [String] = []

        func record(_ failure: String?) {
            lock.lock()
            defer { lock.unlock() }
            runs += 1
            if let failure { failures.append(failure) }
        }

        func snapshot() -> (Int, [String]) {
            lock.lock()
            defer { lock.unlock() }
            return (runs, failures)
        }
    }

    func scaled(_ t: Tensor, by factor: Float) -> Tensor {
        let out = Tensor(zeros: .float32, shape: t.shape)
        t.withUnsafeFloats { src in out.withUnsafeMutableFloats { dst in for i in src.indices { dst[i] = src[i] * factor } } }
        return out
    }
}
