import CKernels
import XCTest

final class FastDispatchTests: XCTestCase {
    func testNamesAndForcedPathsStayWithinHardware() {
        defer { cnx_isa_force(-1) }
        assertPathNames(
            [
                CNX_ISA_SCALAR: "scalar", CNX_ISA_AVX2: "avx2", CNX_ISA_AVX512: "avx512", CNX_ISA_NEON: "neon",
                cnx_isa(rawValue: 7): "unknown",
            ],
            cnx_isa_name)

        cnx_isa_force(99)  // clamped to the best the hardware has
        let hardware = cnx_isa_current()
        XCTAssertLessThanOrEqual(cnx_isa_detect().rawValue, hardware.rawValue)
        cnx_isa_force(Int32(CNX_ISA_SCALAR.rawValue))
        XCTAssertEqual(cnx_isa_current(), CNX_ISA_SCALAR)
        cnx_isa_force(-1)
        XCTAssertEqual(cnx_isa_current(), cnx_isa_detect())

        // CNX_ISA lowers the automatic choice, never above the hardware.
        let saved = getenv("CNX_ISA").map { String(cString: $0) }
        defer { if let saved { setenv("CNX_ISA", saved, 1) } else { unsetenv("CNX_ISA") } }
        unsetenv("CNX_ISA")
        XCTAssertEqual(cnx_isa_detect(), hardware)
        setenv("CNX_ISA", "scalar", 1)
        XCTAssertEqual(cnx_isa_detect(), CNX_ISA_SCALAR)
        setenv("CNX_ISA", "avx2", 1)
        XCTAssertEqual(cnx_isa_detect().rawValue, min(CNX_ISA_AVX2.rawValue, hardware.rawValue))
        setenv("CNX_ISA", "avx512", 1)
        XCTAssertEqual(cnx_isa_detect(), hardware)
        cnx_isa_force(-1)
        XCTAssertEqual(cnx_isa_current(), hardware)
        unsetenv("CNX_ISA")

        let paths = supportedISAs()
        XCTAssertEqual(paths.first, CNX_ISA_SCALAR)
        XCTAssertEqual(paths.last, hardware)
        // x86 levels nest; arm64 has scalar and NEON only.
        XCTAssertEqual(paths.count, hardware == CNX_ISA_NEON ? 2 : Int(hardware.rawValue) + 1)
    }
}
