import Foundation

/// Bytes that back a tensor: memory this process allocated, or a range of a mapped file (or of
/// another owner's memory) kept alive by `owner`.
///
/// The bytes are reached only inside `withUnsafeBytes` / `withUnsafeMutableBytes`: a pointer is
/// valid in the closure and nowhere else. A read-only view (`init(borrowing:...)`, such as a
/// tensor of a `.cnx` file mapped read-only) is never written: the first mutable request gives
/// the storage memory of its own, a copy of the view, and every later access (through any tensor
/// that shares this storage) sees that copy. The file is never touched. As for any write, that
/// first write must not race with other accesses to the same storage.
public final class Storage: @unchecked Sendable {
    /// The start of the bytes; private, handed out only inside the `with...` closures. Changes
    /// once at most: when a read-only view is copied on its first write.
    private var base: UnsafeMutableRawPointer
    public let byteCount: Int
    private var memory: Memory
    /// False for a read-only view not yet copied; a plain flag, so the check on every mutable
    /// access reads one byte and never the `memory` enum that a copy replaces.
    private var writable: Bool
    /// The owner of a view that was copied on write: kept alive so that a reader that started
    /// before the copy still reads valid bytes.
    private var formerOwner: AnyObject?

    private enum Memory {
        /// Allocated here with `allocate`.
        case heap
        /// An anonymous mapping of our own (large allocations).
        case anonymous
        /// Memory `owner` keeps valid; `mapped` for a clean read-only file mapping whose pages
        /// may be given back.
        case view(owner: AnyObject, mapped: Bool)
    }

    /// Bytes from which an allocation gets pages of its own from the kernel (an anonymous
    /// mapping, returned to it when freed). Through malloc, glibc would raise its mmap threshold
    /// after the first large free and serve later weights from the heap, where freed weights
    /// stay resident: a converter that replaces every weight would then hold the model twice.
    static let mappingThreshold = 256 * 1024

    /// Serialises the copy-on-first-write of read-only views (rare; no cost on other accesses).
    private static let copyLock = NSLock()

    /// New zeroed memory, 64-byte aligned.
    public init(byteCount: Int) {
        self.byteCount = byteCount
        (base, memory) = Storage.allocate(byteCount)
        writable = true
    }

    /// A read-only view of memory that `owner` keeps valid; nothing is copied, and nothing is
    /// ever written through it (a mutable request copies the bytes first). `mapped`: the bytes
    /// are a clean, read-only file mapping, whose pages may be given back to the kernel when
    /// this view goes (a converter that replaces every weight then holds each weight once, not
    /// twice).
    public init(borrowing pointer: UnsafeRawPointer, byteCount: Int, owner: AnyObject, mapped: Bool = false) {
        base = UnsafeMutableRawPointer(mutating: pointer)
        self.byteCount = byteCount
        memory = .view(owner: owner, mapped: mapped)
        writable = false
    }

    /// A writable view of memory that `owner` keeps valid and lends for writing (a runtime's
    /// scratch arena); nothing is copied.
    public init(borrowingMutable pointer: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject) {
        base = pointer
        self.byteCount = byteCount
        memory = .view(owner: owner, mapped: false)
        writable = true
    }

    /// A read-only view of `byteCount` bytes of `storage` from byte `offset`; nothing is copied.
    /// A view of a mapped file is mapped too.
    public init(slicing storage: Storage, offset: Int, byteCount: Int) {
        precondition(offset >= 0 && byteCount >= 0 && byteCount <= storage.byteCount - offset, "slice outside the storage's bytes")
        base = storage.base + offset
        self.byteCount = byteCount
        var mapped = false
        if case .view(_, true) = storage.memory { mapped = true }
        memory = .view(owner: storage, mapped: mapped)
        writable = false
    }

    deinit {
        switch memory {
        case .heap: base.deallocate()
        case .anonymous: munmap(base, max(byteCount, 1))
        case .view(_, let mapped): if mapped { dropPages() }
        }
    }

    /// The bytes, read-only, valid only inside `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: base, count: byteCount)) }
    }

    /// The bytes, writable, valid only inside `body`. A read-only view is first replaced by a
    /// copy of its bytes in memory of its own (see the type's note): this never writes to a
    /// mapped file or to memory another owner lent read-only.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        if !writable { copyOnWrite() }
        return try withExtendedLifetime(self) { try body(UnsafeMutableRawBufferPointer(start: base, count: byteCount)) }
    }

    /// False for a read-only view not yet written (writing will copy it first).
    public var isWritable: Bool { writable }

    /// True when the data lives in a mapped file or another owner's memory.
    public var isBorrowed: Bool {
        if case .view = memory { return true }
        return false
    }

    /// Lets the kernel drop the whole pages inside a mapped view; they are read back from the
    /// file if touched again. Does nothing for memory this process allocated.
    public func dropPages() {
        guard case .view(_, mapped: true) = memory else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base)
        let lo = (start + page - 1) / page * page, hi = (start + byteCount) / page * page
        if hi > lo { madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED) }
    }

    /// Replaces a read-only view by a copy in memory of its own (see the type's note); the view's
    /// owner stays alive with the storage, for a reader that took the old bytes just before.
    private func copyOnWrite() {
        Storage.copyLock.lock()
        defer { Storage.copyLock.unlock() }
        guard !writable, case .view(let owner, _) = memory else { return }
        let (copy, kind) = Storage.allocate(byteCount)
        copy.copyMemory(from: base, byteCount: byteCount)
        dropPages()
        formerOwner = owner
        base = copy
        memory = kind
        writable = true
    }

    /// `byteCount` zeroed bytes, 64-byte aligned: an anonymous mapping from `mappingThreshold`,
    /// the heap below it.
    private static func allocate(_ byteCount: Int) -> (UnsafeMutableRawPointer, Memory) {
        let n = max(byteCount, 1)
        if n >= mappingThreshold, let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            return (p, .anonymous)
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        return (p, .heap)
    }
}

/// A whole file mapped read-only into memory. Its bytes are reached inside `withUnsafeBytes`,
/// or as read-only `Storage` views (`storage(offset:byteCount:)`) that keep the mapping alive.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    private let bytes: UnsafeRawPointer?
    public let count: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CNXError("\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CNXError("\(path): cannot stat (\(String(cString: strerror(errno))))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw CNXError("\(path): not a regular file")
        }
        count = Int(st.st_size)
        if count == 0 {
            bytes = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw CNXError("\(path): cannot map \(count) bytes (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawPointer(p)
    }

    deinit {
        if let bytes { munmap(UnsafeMutableRawPointer(mutating: bytes), count) }
    }

    /// The file's bytes (empty for an empty file), valid only inside `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: bytes, count: count)) }
    }

    /// A read-only view of bytes `offset..<offset + byteCount`, which must lie inside the file;
    /// nothing is copied (writing to it copies first: see `Storage`).
    public func storage(offset: Int, byteCount: Int) -> Storage {
        precondition(offset >= 0 && byteCount >= 0 && offset <= count && byteCount <= count - offset, "\(path): view outside the file")
        guard let bytes else { return Storage(byteCount: 0) }
        return Storage(borrowing: bytes + offset, byteCount: byteCount, owner: self, mapped: true)
    }
}
