import CNXGraph

/// Reads packed little-endian fields from one section of a mapped file, never past the section's
/// end: every read checks its length first and throws an error naming the section, the field and
/// the byte offset (Formats/CNX.md, Conventions).
struct ByteCursor {
    let base: UnsafeRawPointer
    private(set) var offset: Int
    let end: Int
    /// "metadata section", "graph section", ..., for messages.
    let section: String

    init(base: UnsafeRawPointer, start: Int, end: Int, section: String) {
        self.base = base
        offset = start
        self.end = end
        self.section = section
    }

    var remaining: Int { end - offset }

    func error(_ message: String) -> CNXError { CNXError("\(section): \(message)") }

    /// Claims `n` bytes and returns where they start.
    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard n >= 0, n <= remaining else {
            throw error("\(what()) at byte \(offset) needs \(n) bytes, but the section ends at byte \(end)")
        }
        defer { offset += n }
        return offset
    }

    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 {
        base.load(fromByteOffset: try take(1, what()), as: UInt8.self)
    }

    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 {
        UInt16(littleEndian: base.loadUnaligned(fromByteOffset: try take(2, what()), as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        UInt32(littleEndian: base.loadUnaligned(fromByteOffset: try take(4, what()), as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        UInt64(littleEndian: base.loadUnaligned(fromByteOffset: try take(8, what()), as: UInt64.self))
    }

    mutating func i32(_ what: @autoclosure () -> String) throws -> Int32 { Int32(bitPattern: try u32(what())) }
    mutating func i64(_ what: @autoclosure () -> String) throws -> Int64 { Int64(bitPattern: try u64(what())) }
    mutating func f32(_ what: @autoclosure () -> String) throws -> Float { Float(bitPattern: try u32(what())) }
    mutating func f64(_ what: @autoclosure () -> String) throws -> Double { Double(bitPattern: try u64(what())) }

    /// A `uint64_t` offset or size that must fit an Int.
    mutating func size(_ what: @autoclosure () -> String) throws -> Int {
        let at = offset
        let v = try u64(what())
        guard let n = Int(exactly: v) else { throw error("\(what()) \(v) at byte \(at) is too large") }
        return n
    }

    /// A `uint64_t` count of entries that each take at least `minimumEntrySize` bytes: checked
    /// against the bytes left in the section before anything is read or allocated for them.
    mutating func count(_ what: @autoclosure () -> String, minimumEntrySize: Int) throws -> Int {
        let at = offset
        let v = try u64(what())
        guard v <= UInt64(remaining / max(minimumEntrySize, 1)) else {
            throw error(
                "\(what()) \(v) at byte \(at) cannot fit: each needs at least \(minimumEntrySize) bytes and \(remaining) remain before the section ends at byte \(end)"
            )
        }
        return Int(v)
    }

    /// An `int32_t` element type code that this reader knows, of `what`.
    mutating func dtype(_ what: String) throws -> DType {
        let at = offset
        let code = try i32("\(what) dtype")
        guard let dtype = DType(rawValue: code) else { throw error("\(what): unknown dtype code \(code) at byte \(at)") }
        return dtype
    }

    /// `cnx_string`: a length, then that many bytes of valid UTF-8.
    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let at = offset
        let length = try u64("\(what()) length")
        guard length <= UInt64(remaining) else {
            throw error(
                "\(what()) at byte \(at) claims \(length) bytes, but only \(remaining) remain before the section ends at byte \(end)")
        }
        let start = try take(Int(length), what())
        let bytes = UnsafeRawBufferPointer(start: base + start, count: Int(length))
        let s = String(decoding: bytes, as: UTF8.self)
        // Decoding replaces invalid sequences, so a changed byte sequence means invalid UTF-8.
        guard s.utf8.elementsEqual(bytes) else { throw error("\(what()) at byte \(at) is not valid UTF-8") }
        return s
    }

    /// Checks that nothing is left over, unless the file is a newer minor version, whose
    /// additions at the end of a section this reader skips.
    func finish(allowTrailing: Bool) throws {
        guard !allowTrailing, offset != end else { return }
        throw error("\(end - offset) bytes left over at byte \(offset), after the last field (the section ends at byte \(end))")
    }
}
