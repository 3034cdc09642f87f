import CNXGraph
import Foundation

/// Prepares the next batches of a dataset on another thread while the caller runs the model on
/// the current one: images are decoded and transformed ahead, at most `depth` batches at a time,
/// so memory stays flat however many samples there are. A `.npy` batch is a view, made inline;
/// with `depth` 0, images are decoded inline too.
final class Prefetcher: @unchecked Sendable {
    private let data: Dataset
    private let ranges: [Range<Int>]
    private let depth: Int
    private let condition = NSCondition()
    private var ready: [Int: Result<Tensor, Error>] = [:]
    private var produced = 0
    private var consumed = 0
    private var cancelled = false
    private var thread: Thread?
    private var threaded = false
    /// Signalled when the decoding thread has returned.
    private let finished = DispatchSemaphore(value: 0)

    init(data: Dataset, ranges: [Range<Int>], depth: Int = 2) {
        self.data = data
        self.ranges = ranges
        self.depth = max(1, depth)
        if case .images = data.source, ranges.count > 1, depth > 0 {
            // The thread holds the prefetcher until it ends: at the last batch, a failure, or
            // `cancel()`, which every caller defers.
            let t = Thread { self.produce() }
            t.name = "validate.decode"
            thread = t
            threaded = true
            t.start()
        }
    }

    /// Stops the decoding thread (the caller is done, perhaps early on an error) and waits for it
    /// to return, so that no thread outlives the validation and nothing stays referenced.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        let running = thread != nil
        thread = nil  // the thread's closure holds this object; the thread object goes with it
        condition.unlock()
        if running { finished.wait() }
    }

    private func produce() {
        defer { finished.signal() }
        while true {
            condition.lock()
            while !cancelled && produced - consumed >= depth { condition.wait() }
            if cancelled || produced >= ranges.count {
                condition.unlock()
                return
            }
            let index = produced
            condition.unlock()
            let result = Result { try data.batch(ranges[index]) }
            condition.lock()
            ready[index] = result
            produced += 1
            condition.broadcast()
            let failed: Bool
            if case .failure = result { failed = true } else { failed = false }
            condition.unlock()
            if failed { return }
        }
    }

    /// The next batch and its samples, in order; nil after the last.
    func next() throws -> (Range<Int>, Tensor)? {
        guard consumed < ranges.count else { return nil }
        let index = consumed
        guard threaded else {
            consumed += 1
            return (ranges[index], try data.batch(ranges[index]))
        }
        condition.lock()
        while ready[index] == nil { condition.wait() }
        let result = ready.removeValue(forKey: index)!
        consumed += 1
        condition.broadcast()
        condition.unlock()
        return (ranges[index], try result.get())
    }
}
