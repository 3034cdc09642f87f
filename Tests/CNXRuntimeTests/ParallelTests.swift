import Foundation
import XCTest

@testable import CNXRuntime

/// The runtime's parallel sections (`parallelChunks`, `parallelGuided`): every item is covered by
/// exactly one chunk, chunks are contiguous ranges, and a chunk's lane is below the thread count
/// and not shared with a chunk running at the same time (the bodies index per-lane scratch by it).
final class ParallelTests: XCTestCase {
    final class Record {
        let lock = NSLock()
        var covered: [Int]
        var active = [Int](repeating: 0, count: 8), mostAtOnce = [Int](repeating: 0, count: 8)
        var chunks: [(Int, Int)] = []
        var badLane = false
        init(_ n: Int) { covered = Array(repeating: 0, count: n) }

        func run(_ lo: Int, _ hi: Int, _ lane: Int, threads: Int) {
            lock.lock()
            guard lane >= 0, lane < threads else {
                badLane = true
                lock.unlock()
                return
            }
            active[lane] += 1
            mostAtOnce[lane] = max(mostAtOnce[lane], active[lane])
            chunks.append((lo, hi))
            lock.unlock()
            var x = 0.0
            for k in 0..<(50 * (hi - lo)) { x += sin(Double(k)) }
            lock.lock()
            if !x.isNaN { for i in lo..<hi { covered[i] += 1 } }
            active[lane] -= 1
            lock.unlock()
        }
    }

    func testGuidedSectionsCoverEveryItemOnceOnDistinctLanes() {
        for threads in [1, 2, 3] {
            for (count, minimum) in [(1, 1), (2, 1), (7, 1), (26, 1), (48, 1), (56, 4), (3136, 8)] {
                let r = Record(count)
                parallelGuided(count, threads: threads, minimum: minimum) { lo, hi, lane in r.run(lo, hi, lane, threads: threads) }
                XCTAssertFalse(r.badLane, "\(count) items, \(threads) threads")
                XCTAssertEqual(r.covered, Array(repeating: 1, count: count), "\(count) items, \(threads) threads")
                XCTAssertEqual(r.mostAtOnce.max(), 1)
                // Chunks shrink as the section goes (claimed in order), none below the minimum but the last.
                let sorted = r.chunks.sorted { $0.0 < $1.0 }
                let sizes = sorted.map { $0.1 - $0.0 }
                XCTAssertEqual(sizes, sizes.sorted(by: >), "\(count) items: \(sizes)")
                XCTAssertTrue(sizes.dropLast().allSatisfy { $0 >= min(minimum, count) }, "\(sizes)")
                if threads > 1 && count >= 4 * threads * minimum {
                    XCTAssertGreaterThan(sizes.count, threads, "\(count) items in \(sizes)")
                }
            }
        }
    }

    func testEqualChunksCoverEveryItemOnce() {
        for threads in [1, 2, 3] {
            for count in [1, 2, 7, 56] {
                let r = Record(count)
                parallelChunks(count, threads: threads) { lo, hi, lane in r.run(lo, hi, lane, threads: threads) }
                XCTAssertFalse(r.badLane)
                XCTAssertEqual(r.covered, Array(repeating: 1, count: count))
                XCTAssertEqual(r.chunks.count, min(threads, count))
            }
        }
    }
}
