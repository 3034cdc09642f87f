import Foundation

/// A progress line on stderr for work that takes more than a second, shown only when stderr is a
/// terminal (nothing at all when it is piped or redirected): `label: 120/360 (33%), 2.1 s`.
public final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let enabled: Bool
    private let start = Date()
    private var done = 0
    private var lastDraw: Date?
    private var drawn = false
    private let lock = NSLock()

    /// - Parameters:
    ///   - enabled: nil (the default) shows progress when stderr is a terminal.
    public init(_ label: String, total: Int, enabled: Bool? = nil) {
        self.label = label
        self.total = total
        self.enabled = enabled ?? (isatty(2) != 0)
    }

    /// Records `count` more units done; redraws at most ten times a second, after the first second.
    public func advance(by count: Int = 1) {
        lock.lock()
        defer { lock.unlock() }
        done += count
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(start) >= 1 else { return }
        if let last = lastDraw, now.timeIntervalSince(last) < 0.1, done < total { return }
        lastDraw = now
        let percent = total > 0 ? done * 100 / total : 100
        write(String(format: "\r%@: %d/%d (%d%%), %.1f s\u{1B}[K", label, done, total, percent, now.timeIntervalSince(start)))
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
