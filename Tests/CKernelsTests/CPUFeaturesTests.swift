import CKernels
import Foundation
import XCTest

/// The one CPU-feature table (cnx_cpu.h): its levels, what CNX_ISA does to every kernel family,
/// and on Linux x86 the detected bits against the kernel's own /proc/cpuinfo flags.
final class CPUFeaturesTests: XCTestCase {
    let x86: UInt32 =
        CNX_CPU_AVX2.rawValue | CNX_CPU_AVX_VNNI.rawValue | CNX_CPU_AVX512.rawValue
        | CNX_CPU_AVX512_VNNI.rawValue | CNX_CPU_AVX512_BF16.rawValue
    let arm64: UInt32 = CNX_CPU_NEON.rawValue | CNX_CPU_DOTPROD.rawValue | CNX_CPU_I8MM.rawValue | CNX_CPU_BF16.rawValue

    func withISA(_ value: String?, _ body: () -> Void) {
        let saved = getenv("CNX_ISA").map { String(cString: $0) }
        defer {
            if let saved { setenv("CNX_ISA", saved, 1) } else { unsetenv("CNX_ISA") }
            cnx_isa_force(-1)
            cnx_qisa_force(-1)
        }
        if let value { setenv("CNX_ISA", value, 1) } else { unsetenv("CNX_ISA") }
        body()
    }

    func testLevelsAreOneTable() {
        let names = String(cString: cnx_cpu_level_names()).components(separatedBy: ", ")
        XCTAssertEqual(names, ["scalar", "avx2", "avxvnni", "avx512", "avx512vnni", "neon", "dotprod", "i8mm"])
        for name in names { XCTAssertEqual(cnx_cpu_level(name, nil), 1, name) }
        for bad in ["", "AVX2", "avx9000", "sse", "scalar "] { XCTAssertEqual(cnx_cpu_level(bad, nil), 0, bad) }
        var allowed: UInt32 = 0xdead
        XCTAssertEqual(cnx_cpu_level("scalar", &allowed), 1)
        XCTAssertEqual(allowed, 0)
        XCTAssertEqual(cnx_cpu_level("avx512", &allowed), 1)
        XCTAssertEqual(allowed, x86)
        XCTAssertEqual(cnx_cpu_level("i8mm", &allowed), 1)
        XCTAssertEqual(allowed, arm64)
        XCTAssertEqual(String(cString: cnx_cpu_feature_name(CNX_CPU_AVX512_VNNI.rawValue)), "avx512vnni")
        XCTAssertEqual(String(cString: cnx_cpu_feature_name(CNX_CPU_DOTPROD.rawValue)), "dotprod")
        XCTAssertEqual(String(cString: cnx_cpu_feature_name(3)), "unknown")
    }

    func testHardwareBitsAreConsistent() {
        let hw = cnx_cpu_hardware()
        XCTAssertFalse(hw & x86 != 0 && hw & arm64 != 0, "x86 and arm64 features at once")
        if hw & (CNX_CPU_AVX512.rawValue | CNX_CPU_AVX_VNNI.rawValue) != 0 { XCTAssertNotEqual(hw & CNX_CPU_AVX2.rawValue, 0) }
        if hw & (CNX_CPU_AVX512_VNNI.rawValue | CNX_CPU_AVX512_BF16.rawValue) != 0 { XCTAssertNotEqual(hw & CNX_CPU_AVX512.rawValue, 0) }
        if hw & arm64 != 0 { XCTAssertNotEqual(hw & CNX_CPU_NEON.rawValue, 0) }
        #if arch(arm64)
            XCTAssertNotEqual(hw & CNX_CPU_NEON.rawValue, 0, "every arm64 CPU has NEON")
        #endif
    }

    /// The bits match the flags Linux reports for the CPU (which also require OS support for
    /// the registers: Linux saves ymm/zmm state wherever it reports avx2 / avx512f).
    func testX86BitsMatchProcCpuinfo() throws {
        #if os(Linux) && arch(x86_64)
            let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
                throw XCTSkip("no flags line in /proc/cpuinfo")
            }
            let flags = Set(line.split(separator: ":")[1].split(separator: " ").map(String.init))
            let hw = cnx_cpu_hardware()
            func has(_ f: cnx_cpu_feature) -> Bool { hw & f.rawValue != 0 }
            let avx2 = flags.isSuperset(of: ["avx", "avx2", "fma"])
            let avx512 = avx2 && flags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"])
            XCTAssertEqual(has(CNX_CPU_AVX2), avx2, "avx2")
            XCTAssertEqual(has(CNX_CPU_AVX512), avx512, "avx512")
            XCTAssertEqual(has(CNX_CPU_AVX512_VNNI), avx512 && flags.contains("avx512_vnni"), "avx512_vnni")
            XCTAssertEqual(has(CNX_CPU_AVX512_BF16), avx512 && flags.contains("avx512_bf16"), "avx512_bf16")
            XCTAssertEqual(has(CNX_CPU_AVX_VNNI), avx2 && flags.contains("avx_vnni"), "avx_vnni")
        #else
            throw XCTSkip("Linux x86_64 only")
        #endif
    }

    /// One variable lowers every kernel family; an unknown value lowers nothing.
    func testOneVariableForEveryFamily() {
        let hw = cnx_cpu_hardware()
        withISA(nil) { XCTAssertEqual(cnx_cpu_features(), hw) }
        withISA("no-such-level") { XCTAssertEqual(cnx_cpu_features(), hw) }
        withISA("scalar") {
            XCTAssertEqual(cnx_cpu_features(), 0)
            XCTAssertEqual(cnx_isa_detect(), CNX_ISA_SCALAR)
            XCTAssertEqual(cnx_qisa_detect(), CNX_QISA_SCALAR)
        }
        for level in ["avx2", "avxvnni", "avx512", "neon", "dotprod", "i8mm"] {
            withISA(level) {
                var allowed: UInt32 = 0
                _ = cnx_cpu_level(level, &allowed)
                XCTAssertEqual(cnx_cpu_features(), hw & allowed, level)
                // Neither family goes above what the level allows.
                if allowed & CNX_CPU_AVX512.rawValue == 0 { XCTAssertNotEqual(cnx_isa_detect(), CNX_ISA_AVX512, level) }
                if allowed & CNX_CPU_AVX_VNNI.rawValue == 0 { XCTAssertNotEqual(cnx_qisa_detect(), CNX_QISA_AVX_VNNI, level) }
                if allowed & x86 == 0 {
                    XCTAssertFalse([CNX_ISA_AVX2, CNX_ISA_AVX512].contains(cnx_isa_detect()), level)
                    XCTAssertFalse([CNX_QISA_AVX2, CNX_QISA_AVX_VNNI, CNX_QISA_AVX512_VNNI].contains(cnx_qisa_detect()), level)
                }
                if allowed & arm64 == 0 {
                    XCTAssertNotEqual(cnx_isa_detect(), CNX_ISA_NEON, level)
                    XCTAssertFalse([CNX_QISA_NEON, CNX_QISA_DOTPROD, CNX_QISA_I8MM].contains(cnx_qisa_detect()), level)
                }
            }
        }
    }
}
