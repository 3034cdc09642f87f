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

    func testSharesCoverEveryItemOnceInPiecesOnDistinctLanes() {
        for threads in [1, 2, 3] {
            for (count, piece, least) in [(1, 1, 1), (2, 1, 1), (7, 2, 1), (56, 8, 2), (576, 58, 28), (3136, 128, 28)] {
                let r = Record(count)
                parallelShares(count, threads: threads, piece: piece, least: least) { lo, hi, lane in r.run(lo, hi, lane, threads: threads)
                }
                XCTAssertFalse(r.badLane, "\(count) items, \(threads) threads")
                XCTAssertEqual(r.covered, Array(repeating: 1, count: count), "\(count) items, \(threads) threads")
                XCTAssertEqual(r.mostAtOnce.max(), 1)
                XCTAssertTrue(r.chunks.allSatisfy { $0.1 - $0.0 <= piece && $0.1 > $0.0 }, "\(r.chunks)")
            }
        }
    }

    /// A thread held up in its first piece: the other finishes its own share, then takes the
    /// held thread's share from the back, in halves of what is left (at least `least` items).
    func testAThreadHeldUpHandsItsShareOver() {
        let lock = NSCondition()
        var pieces: [(lo: Int, hi: Int, lane: Int)] = []
        var stolen = false, timedOut = false
        let count = 200, piece = 20, least = 3
        parallelShares(count, threads: 2, piece: piece, least: least) { lo, hi, lane in
            lock.lock()
            pieces.append((lo, hi, lane))
            if lo >= count / 2 && lane == 0 { stolen = true; lock.broadcast() }
            // The first piece of the second share waits (at most 20 s) until lane 0 has taken one of its pieces.
            if lo == count / 2 && lane == 1 {
                let deadline = Date().addingTimeInterval(20)
                while !stolen && !timedOut { timedOut = !lock.wait(until: deadline) }
            }
            lock.unlock()
        }
        XCTAssertFalse(timedOut)
        var covered = [Int](repeating: 0, count: count)
        for p in pieces { for i in p.lo..<p.hi { covered[i] += 1 } }
        XCTAssertEqual(covered, Array(repeating: 1, count: count))
        // Lane 0's own share, front to back in whole pieces.
        XCTAssertEqual(pieces.filter { $0.lo < count / 2 }.map(\.lo), Array(stride(from: 0, to: count / 2, by: piece)))
        // What it took of the second share: from the back, each piece half of what was left then
        // (or `least`, or all), never more than `piece`.
        let taken = pieces.filter { $0.lo >= count / 2 && $0.lane == 0 }
        XCTAssertFalse(taken.isEmpty)
        XCTAssertEqual(taken.first?.hi, count, "the first piece taken over is the share's last")
        XCTAssertTrue(taken.allSatisfy { $0.hi - $0.lo <= piece })
    }
}
