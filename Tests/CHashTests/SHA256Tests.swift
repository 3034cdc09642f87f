import CHash
import XCTest

/// The SHA-extension compression against its portable twin, and both against FIPS 180-4's
/// published digests.
final class SHA256Tests: XCTestCase {
    let initial: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]

    func digest(_ message: [UInt8], _ f: (UnsafeMutablePointer<UInt32>, UnsafePointer<UInt8>, Int) -> Void) -> String {
        var padded = message + [0x80]
        while padded.count % 64 != 56 { padded.append(0) }
        let bits = UInt64(message.count) * 8
        for i in (0..<8).reversed() { padded.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        var state = initial
        state.withUnsafeMutableBufferPointer { s in padded.withUnsafeBufferPointer { f(s.baseAddress!, $0.baseAddress!, padded.count / 64) }
        }
        return state.map { String(format: "%08x", $0) }.joined()
    }

    func testKnownDigests() {
        let vectors: [(String, String)] = [
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ]
        for (text, expected) in vectors {
            XCTAssertEqual(digest(Array(text.utf8)) { cnx_sha256_blocks($0, $1, $2) }, expected, text)
            XCTAssertEqual(digest(Array(text.utf8)) { cnx_sha256_blocks_ref($0, $1, $2) }, expected, text)
        }
    }

    func testFastPathMatchesReferenceOnManyLengths() {
        var state: UInt64 = 42
        for length in [1, 55, 56, 63, 64, 65, 127, 128, 1000, 4096 + 13] {
            let message = (0..<length).map { _ -> UInt8 in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return UInt8(truncatingIfNeeded: state >> 33)
            }
            XCTAssertEqual(
                digest(message) { cnx_sha256_blocks($0, $1, $2) }, digest(message) { cnx_sha256_blocks_ref($0, $1, $2) }, "\(length)")
        }
    }
}
