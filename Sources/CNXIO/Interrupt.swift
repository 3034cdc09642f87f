import Foundation

/// Removes unfinished temporary files when the process is interrupted (SIGINT, SIGTERM), so that
/// an atomic write cut short leaves nothing behind: the writers register a temporary path before
/// creating it and unregister it once it has been renamed into place (or removed).
///
/// The handlers are installed on the first registration. On a signal, the handler unlinks every
/// registered path, using only async-signal-safe calls on C strings copied at registration, then
/// restores the previous disposition and raises the signal again: the process ends as it would
/// have (killed by the signal), or the application's own handler runs. A signal the process
/// ignores (SIG_IGN, as under `nohup`) stays ignored, and nothing is installed for it.
///
/// Limits: at most `capacity` files at once are covered (a registration beyond that returns nil
/// and the file is simply not cleaned up on a signal). The table is read by the handler without
/// a lock: a handler running on one thread while another thread unregisters the same path has a
/// window of a few instructions in which it could read a string being freed; a string is never
/// freed once a handler has started.
public enum InterruptCleanup {
    /// A registered path; pass it to `unregister`.
    public struct Token {
        fileprivate let slot: Int
    }

    /// How many temporary files can be registered at the same time.
    public static let capacity = 64

    /// Registers `path` for removal on SIGINT or SIGTERM. Call before creating the file.
    @discardableResult
    public static func register(_ path: String) -> Token? {
        installHandlers
        guard let copy = strdup(path) else { return nil }
        pthread_mutex_lock(table.lock)
        defer { pthread_mutex_unlock(table.lock) }
        for i in 0..<capacity where table.paths[i] == nil {
            // One word store publishes a string that strdup finished writing.
            table.paths[i] = copy
            return Token(slot: i)
        }
        free(copy)
        return nil
    }

    /// Forgets a path: call once the file has been renamed into place or removed.
    public static func unregister(_ token: Token?) {
        guard let token else { return }
        pthread_mutex_lock(table.lock)
        defer { pthread_mutex_unlock(table.lock) }
        let copy = table.paths[token.slot]
        table.paths[token.slot] = nil
        if table.handling.pointee == 0 { free(copy) }
    }

    /// Test hook, for tests that interrupt a process at a known point instead of after a guessed
    /// delay. With the environment variable `CNX_TEST_PAUSE_AT` set to `point`, the process stops
    /// the first time it reaches the point: it writes `cnx-test: paused at <point>` and a newline
    /// to stderr, then waits until one byte or end of file arrives on stdin (or a signal ends
    /// it). Without the variable this costs one comparison; `point` is not even built.
    public static func testPoint(_ point: @autoclosure () -> String) {
        guard let wanted = pausePoint, !pausedOnce.pointee, point() == wanted else { return }
        pausedOnce.pointee = true
        let line = Array("cnx-test: paused at \(wanted)\n".utf8)
        line.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(2, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                done += n
            }
        }
        var byte: UInt8 = 0
        while read(0, &byte, 1) < 0 && errno == EINTR {}
    }

    private static let pausePoint: String? = getenv("CNX_TEST_PAUSE_AT").map { String(cString: $0) }
    private static let pausedOnce: UnsafeMutablePointer<Bool> = {
        let p = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
        p.initialize(to: false)
        return p
    }()

    /// The registry, allocated once and never freed, so that the handler can read it without
    /// touching the Swift runtime: raw pointers only, no reference counting, no exclusivity checks.
    fileprivate struct Table {
        let paths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
        let lock: UnsafeMutablePointer<pthread_mutex_t>
        /// Set to 1 when a handler starts.
        let handling: UnsafeMutablePointer<Int>
        /// The dispositions the handlers replaced, indexed by signal number.
        let previous: UnsafeMutablePointer<sigaction>
    }

    fileprivate static let signals: [Int32] = [SIGINT, SIGTERM]

    fileprivate static let table: Table = {
        let paths = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        paths.initialize(repeating: nil, count: capacity)
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        let handling = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        handling.initialize(to: 0)
        let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: Int(NSIG))
        previous.initialize(repeating: sigaction(), count: Int(NSIG))
        return Table(paths: paths, lock: lock, handling: handling, previous: previous)
    }()

    /// Installs the handlers, once (a lazily initialised static runs its initialiser once).
    private static let installHandlers: Void = {
        _ = table
        for signal in signals {
            var current = sigaction()
            guard sigaction(signal, nil, &current) == 0 else { continue }
            if handlerAddress(current) == handlerAddress(ignored) { continue }
            table.previous[Int(signal)] = current
            var action = sigaction()
            action.handler = interruptHandler
            sigemptyset(&action.sa_mask)
            for s in signals { sigaddset(&action.sa_mask, s) }
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }()

    private static let ignored: sigaction = {
        var a = sigaction()
        a.handler = SIG_IGN
        return a
    }()

    fileprivate static func handlerAddress(_ a: sigaction) -> Int { unsafeBitCast(a.handler, to: Int.self) }
}

extension sigaction {
    /// The disposition's handler (SIG_DFL, SIG_IGN or a function), whose field each C library
    /// names its own way.
    fileprivate var handler: (@convention(c) (Int32) -> Void)? {
        get {
            #if os(Linux)
                return __sigaction_handler.sa_handler
            #else
                return __sigaction_u.__sa_handler
            #endif
        }
        set {
            #if os(Linux)
                __sigaction_handler.sa_handler = newValue
            #else
                __sigaction_u.__sa_handler = newValue
            #endif
        }
    }
}

/// The signal handler: async-signal-safe calls only (unlink, sigaction, raise), on memory that
/// `InterruptCleanup.table` allocated before the handler was installed.
private func interruptHandler(_ signal: Int32) {
    let table = InterruptCleanup.table
    table.handling.pointee = 1
    for i in 0..<InterruptCleanup.capacity {
        if let path = table.paths[i] { unlink(path) }
    }
    // Back to what was there before (the default: terminate), then deliver the signal again; it
    // is blocked while this handler runs, so it takes effect as the handler returns.
    sigaction(signal, table.previous + Int(signal), nil)
    raise(signal)
}
