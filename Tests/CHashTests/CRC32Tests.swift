import CHash
import CZlib
import XCTest

/// The plain-C CRC-32 against zlib's crc32 (the value the `.cnx` format promises), on the empty
/// buffer, random buffers at every alignment, continued CRCs and a known check value.
final class CRC32Tests: XCTestCase {
    func zlib(_ crc: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32(uLong(crc), p.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(p.count)))
    }

    func testEmptyBuffer() {
        XCTAssertEqual(cnx_crc32(0, nil, 0), 0)
        XCTAssertEqual(cnx_crc32_ref(0, nil, 0), 0)
        XCTAssertEqual(UInt32(crc32(0, nil, 0)), 0)
        // An empty update of a real buffer leaves a running value unchanged, as zlib's does.
        // (zlib's crc32(_, NULL, _) is its "initial value" query and returns 0; a NULL pointer
        // here is just an empty buffer.)
        let byte: [UInt8] = [0]
        byte.withUnsafeBytes { p in
            XCTAssertEqual(cnx_crc32(0xdeadbeef, p.baseAddress, 0), zlib(0xdeadbeef, UnsafeRawBufferPointer(rebasing: p[0..<0])))
            XCTAssertEqual(cnx_crc32(0xdeadbeef, p.baseAddress, 0), 0xdeadbeef)
        }
        XCTAssertEqual(cnx_crc32(0xdeadbeef, nil, 0), 0xdeadbeef)
    }

    func testCheckValue() {
        // The CRC-32 check value: the CRC of the ASCII digits "123456789".
        let digits = Array("123456789".utf8)
        XCTAssertEqual(cnx_crc32(0, digits, digits.count), 0xCBF43926)
        XCTAssertEqual(cnx_crc32_ref(0, digits, digits.count), 0xCBF43926)
    }

    func testRandomBuffersMatchZlib() {
        var rng = SystemRandomNumberGenerator()
        let buffer = (0..<(1 << 17) + 64).map { _ in UInt8.random(in: 0...255, using: &rng) }
        buffer.withUnsafeBytes { all in
            // Short buffers at each of 16 alignments, then long ones.
            var cases: [(Int, Int)] = []
            for offset in 0..<16 { for count in 0..<40 { cases.append((offset, count)) } }
            for _ in 0..<200 { cases.append((Int.random(in: 0..<64), Int.random(in: 0...(1 << 17)))) }
            for (offset, count) in cases {
                let slice = UnsafeRawBufferPointer(rebasing: all[offset..<offset + count])
                let start = UInt32.random(in: 0...UInt32.max)
                let expected = zlib(start, slice)
                XCTAssertEqual(cnx_crc32(start, slice.baseAddress, count), expected, "offset \(offset), \(count) bytes")
                if count < 4096 {
                    XCTAssertEqual(cnx_crc32_ref(start, slice.baseAddress, count), expected, "offset \(offset), \(count) bytes")
                }
            }
        }
    }

    func testContinuedEqualsWhole() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        bytes.withUnsafeBytes { all in
            let whole = zlib(0, all)
            for cut in [0, 1, 7, 8, 9, 4_999, 9_999, 10_000] {
                let a = cnx_crc32(0, all.baseAddress, cut)
                let b = cnx_crc32(a, all.baseAddress! + cut, all.count - cut)
                XCTAssertEqual(b, whole, "cut at \(cut)")
            }
        }
    }
}
