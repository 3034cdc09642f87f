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
        /// Per lane: chunks running on it now, the most seen at once, and chunks run.
        var active = [Int](repeating: 0, count: 64), mostAtOnce = [Int](repeating: 0, count: 64)
        var lanes = [Int](repeating: 0, count: 64)
        var badLane = false
        let lock = NSLock()
        init(_ n: Int) { runs = Array(repeating: 0, count: n) }
    }

    static let countChunk: cnx_pool_fn = { ctx, i, lane in
        let c = Unmanaged<Counts>.fromOpaque(ctx!).takeUnretainedValue()
        let l = Int(lane)
        c.lock.lock()
        if l < 0 || l >= 64 {
            c.badLane = true
            c.lock.unlock()
            return
        }
        c.active[l] += 1
        c.mostAtOnce[l] = max(c.mostAtOnce[l], c.active[l])
        c.lanes[l] += 1
        c.lock.unlock()
        // Some work, so that chunks overlap on the threads.
        var x = 0.0
        for k in 0..<(200 * (Int(i) % 3 + 1)) { x += sin(Double(k)) }
        if x.isNaN { return }
        c.lock.lock()
        c.active[l] -= 1
        c.runs[Int(i)] += 1
        c.lock.unlock()
        if c.nest && i == 0 {
            c.nested = cnx_pool_run(2, 2, { _, _, _ in }, nil)
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

    /// Each chunk is told its thread's lane: below the section's thread count, and never the
    /// lane of a chunk running at the same time (per-lane scratch relies on it), also when a
    /// section with fewer threads follows one with more (the extra workers stay out).
    func testLanesAreBelowTheThreadCountAndNeverShared() {
        for threads in [4, 2, 3, 1, 2] {
            for chunks in [2, 5, 64] {
                for _ in 0..<100 {
                    let c = Counts(chunks)
                    XCTAssertEqual(
                        cnx_pool_run(Int64(threads), Int64(chunks), PoolTests.countChunk, Unmanaged.passUnretained(c).toOpaque()), 1)
                    XCTAssertFalse(c.badLane)
                    XCTAssertEqual(c.runs, Array(repeating: 1, count: chunks))
                    XCTAssertEqual(c.lanes[threads...].reduce(0, +), 0, "a lane at or above \(threads) threads ran a chunk")
                    XCTAssertEqual(c.mostAtOnce.max(), 1, "two chunks ran at once on one lane")
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
                    for i in 0..<chunks { PoolTests.countChunk(ctx, Int64(i), 0) }
                }
            }
        }
        for t in 0..<callers { for s in 0..<sections { XCTAssertEqual(all[t][s].runs, Array(repeating: 1, count: chunks)) } }
    }
}
