import Foundation

/// A progress line on stderr for work that takes more than a second, shown only when stderr is a
/// terminal: `label: 120/360 (33%), 2.1 s, 57.1/s, 4.2 s left`. When stderr is a file (a
/// scheduler's log), `logEvery` seconds (if set) apart a plain line of the same figures.
public final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let enabled: Bool
    private let start = Date()
    private var done = 0
    private var lastDraw: Date?
    private var drawn = false
    private let lock = NSLock()
    private let logEvery: Double?
    private var lastLog: Date

    /// - Parameters:
    ///   - enabled: nil (the default) shows progress when stderr is a terminal.
    ///   - logEvery: when stderr is not a terminal (and `enabled` is not false), print a line
    ///     this many seconds apart.
    public init(_ label: String, total: Int, enabled: Bool? = nil, logEvery: Double? = nil) {
        self.label = label
        self.total = total
        let terminal = isatty(2) != 0
        self.enabled = enabled ?? terminal
        self.logEvery = enabled == false || terminal ? nil : logEvery
        lastLog = start
    }

    /// `120/360 (33%), 2.1 s, 57.1/s, 4.2 s left`.
    private func figures(_ now: Date) -> String {
        let elapsed = now.timeIntervalSince(start)
        let percent = total > 0 ? done * 100 / total : 100
        var text = String(format: "%d/%d (%d%%), %.1f s", done, total, percent, elapsed)
        if elapsed > 0 && done > 0 {
            let rate = Double(done) / elapsed
            text += String(format: rate >= 100 ? ", %.0f/s" : ", %.1f/s", rate)
            if done < total { text += String(format: ", %.0f s left", Double(total - done) / rate) }
        }
        return text
    }

    /// Records `count` more units done; redraws at most ten times a second, after the first second.
    public func advance(by count: Int = 1) {
        lock.lock()
        defer { lock.unlock() }
        done += count
        let now = Date()
        if let every = logEvery, now.timeIntervalSince(lastLog) >= every {
            lastLog = now
            write("\(label): \(figures(now))\n")
        }
        guard enabled, logEvery == nil else { return }
        guard now.timeIntervalSince(start) >= 1 else { return }
        if let last = lastDraw, now.timeIntervalSince(last) < 0.1, done < total { return }
        lastDraw = now
        write("\r\(label): \(figures(now))\u{1B}[K")
        drawn = true
    }

    /// Clears the line, if anything was drawn.
    public func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { write("\r\u{1B}[K") }
        drawn = false
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
