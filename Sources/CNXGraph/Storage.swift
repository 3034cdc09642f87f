import Foundation

/// Bytes that back a tensor: memory this process allocated, or a range of a mapped file (or of
/// another owner's memory) kept alive by `owner`.
public final class Storage: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: AnyObject?
    private let allocated: Bool
    private let releasesPages: Bool
    /// Memory of an anonymous mapping of our own (large allocations).
    private let anonymous: Bool

    /// Bytes from which an allocation gets pages of its own from the kernel (an anonymous
    /// mapping, returned to it when freed). Through malloc, glibc would raise its mmap threshold
    /// after the first large free and serve later weights from the heap, where freed weights
    /// stay resident: a converter that replaces every weight would then hold the model twice.
    static let mappingThreshold = 256 * 1024

    /// New zeroed memory, 64-byte aligned.
    public init(byteCount: Int) {
        let n = max(byteCount, 1)
        self.byteCount = byteCount
        owner = nil
        releasesPages = false
        if n >= Storage.mappingThreshold, let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        {
            bytes = p
            allocated = false
            anonymous = true
            return
        }
        bytes = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        allocated = true
        anonymous = false
    }

    /// A view of memory that `owner` keeps valid; nothing is copied. Read-only by contract.
    /// `mapped`: the bytes are a clean, read-only file mapping, whose pages may be given back to
    /// the kernel when this view goes (a converter that replaces every weight then holds each
    /// weight once, not twice).
    public init(borrowing pointer: UnsafeRawPointer, byteCount: Int, owner: AnyObject, mapped: Bool = false) {
        bytes = UnsafeMutableRawPointer(mutating: pointer)
        self.byteCount = byteCount
        self.owner = owner
        allocated = false
        anonymous = false
        releasesPages = mapped
    }

    deinit {
        if allocated {
            bytes.deallocate()
        } else if anonymous {
            munmap(bytes, max(byteCount, 1))
        } else if releasesPages {
            dropPages()
        }
    }

    /// Lets the kernel drop the whole pages inside a mapped view; they are read back from the
    /// file if touched again. Does nothing for memory this process allocated.
    public func dropPages() {
        guard releasesPages else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: bytes)
        let lo = (start + page - 1) / page * page, hi = (start + byteCount) / page * page
        if hi > lo { madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED) }
    }

    /// True when the data lives in a mapped file or another owner's memory.
    public var isBorrowed: Bool { !allocated && !anonymous }
}

/// A whole file mapped read-only into memory.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawPointer?
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

    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: bytes, count: count) }
}
