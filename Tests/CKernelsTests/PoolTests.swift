import CKernels
import Dispatch
import Foundation
import XCTest

/// The spinning thread pool (cnx_pool.h): every chunk of every section runs exactly once, the
/// call returns only after all have finished, and a second caller (another thread, or a section
/// inside a section) is told the pool is taken instead of waiting or sharing it.
final class PoolTests: XCTestCase {
    /// Counts, per chunk, how often it ran; `nested`: the nested call's result, when `nest` asks for one.
    final class Counts {
        var runs: [Int32]
        var nested: Int32 = -1
        var nest = false
        let lock = NSLock()
        init(_ n: Int) { runs = Array(repeating: 0, count: n) }
    }

    static let countChunk: cnx_pool_fn = { ctx, i in
        let c = Unmanaged<Counts>.fromOpaque(ctx!).takeUnretainedValue()
        // Some work, so that chunks overlap on the threads.
        var x = 0.0
        for k in 0..<(200 * (Int(i) % 3 + 1)) { x += sin(Double(k)) }
        if x.isNaN { return }
        c.lock.lock()
        c.runs[Int(i)] += 1
        c.lock.unlock()
        if c.nest && i == 0 {
            c.nested = cnx_pool_run(2, 2, { _, _ in }, nil)
        }
    }

    func testEveryChunkRunsOnceInManySections() {
        for threads in [2, 3] {
            for chunks in [1, 2, 3, 7, 64] {
                for _ in 0..<200 {
                    let c = Counts(chunks)
                    let ok = cnx_pool_run(Int64(threads), Int64(chunks), PoolTests.countChunk, Unmanaged.passUnretained(c).toOpaque())
                    XCTAssertEqual(ok, 1)
                    XCTAssertEqual(c.runs, Array(repeating: 1, count: chunks), "threads \(threads), chunks \(chunks)")
                }
            }
        }
    }

    func testNestedSectionIsRefused() {
        let c = Counts(2)
        c.nest = true
        XCTAssertEqual(cnx_pool_run(2, 2, PoolTests.countChunk, Unmanaged.passUnretained(c).toOpaque()), 1)
        XCTAssertEqual(c.nested, 0)
        XCTAssertEqual(c.runs, [1, 1])
    }

    func testConcurrentCallersEachGetTheirChunksRunOnce() {
        // Four threads call at once: each section either ran on the pool (1) or was refused (0)
        // and then runs its chunks itself; either way every chunk counts once.
        let callers = 4, sections = 100, chunks = 5
        let all = (0..<callers).map { _ in (0..<sections).map { _ in Counts(chunks) } }
        DispatchQueue.concurrentPerform(iterations: callers) { t in
            for s in 0..<sections {
                let c = all[t][s]
                let ctx = Unmanaged.passUnretained(c).toOpaque()
                if cnx_pool_run(2, Int64(chunks), PoolTests.countChunk, ctx) == 0 {
                    for i in 0..<chunks { PoolTests.countChunk(ctx, Int64(i)) }
                }
            }
        }
        for t in 0..<callers { for s in 0..<sections { XCTAssertEqual(all[t][s].runs, Array(repeating: 1, count: chunks)) } }
    }
}
