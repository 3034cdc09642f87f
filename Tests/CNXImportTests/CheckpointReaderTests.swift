import CNXConvert
import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// Pickle opcodes, for writing test pickles by hand.
struct PickleBytes {
    var bytes: [UInt8] = [0x80, 2]  // PROTO 2

    mutating func op(_ code: UInt8) { bytes.append(code) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        bytes.append(0x58)
        withUnsafeBytes(of: UInt32(u.count).littleEndian) { bytes += $0 }
        bytes += u
    }
    mutating func int(_ v: UInt8) { bytes += [0x4b, v] }
    mutating func global(_ module: String, _ name: String) { bytes += [0x63] + Array("\(module)\n\(name)\n".utf8) }
    mutating func stop() { bytes.append(0x2e) }

    /// `{name: tensor}` with one float32 tensor of `shape` (strides `strides`) at `offset` in storage "0" of `numel` elements.
    static func stateDict(name: String = "w", shape: [UInt8], strides: [UInt8], offset: UInt8 = 0, numel: UInt8) -> [UInt8] {
        var p = PickleBytes()
        p.op(0x7d)  // EMPTY_DICT
        p.op(0x28)  // MARK
        p.string(name)
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.op(0x28)  // MARK (args)
        p.op(0x28)  // MARK (persistent id)
        p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(numel)
        p.op(0x74)  // TUPLE
        p.op(0x51)  // BINPERSID
        p.int(offset)
        p.op(0x28); for s in shape { p.int(s) }; p.op(0x74)
        p.op(0x28); for s in strides { p.int(s) }; p.op(0x74)
        p.op(0x89)  // NEWFALSE
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)  // OrderedDict()
        p.op(0x74)  // TUPLE (args)
        p.op(0x52)  // REDUCE
        p.op(0x75)  // SETITEMS
        p.stop()
        return p.bytes
    }
}

/// A zip archive written by hand: (name, method, data, declared uncompressed size).
func makeZip(_ entries: [(name: String, method: UInt16, data: [UInt8], size: Int?)]) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
    func u32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xff) } }
    var out: [UInt8] = [], directory: [UInt8] = []
    for e in entries {
        let name = Array(e.name.utf8), crc = Int(crc32(e.method == 0 ? e.data : []))
        let size = e.size ?? e.data.count
        let local = out.count
        out +=
            u32(0x0403_4b50) + u16(20) + u16(0) + u16(Int(e.method)) + u16(0) + u16(0) + u32(crc)
            + u32(e.data.count) + u32(size) + u16(name.count) + u16(0) + name + e.data
        directory +=
            u32(0x0201_4b50) + u16(20) + u16(20) + u16(0) + u16(Int(e.method)) + u16(0) + u16(0) + u32(crc)
            + u32(e.data.count) + u32(size) + u16(name.count) + u16(0) + u16(0) + u16(0) + u16(0) + u32(0) + u32(local) + name
    }
    let start = out.count
    out += directory
    out += u32(0x0605_4b50) + u16(0) + u16(0) + u16(entries.count) + u16(entries.count) + u32(directory.count) + u32(start) + u16(0)
    return out
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
    }
    return ~crc
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } } }

/// The readers on edge cases and hostile input: every element type and pickle protocol, views,
/// wrappers; refusals that name what they refuse, and never run anything.
final class CheckpointReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func message(_ body: () throws -> Any) -> String { thrownMessage(body) }

    // MARK: element types, protocols, views

    func testEveryElementTypeAndPickleProtocolReadsTheSameValues() throws {
        let a: [Float] = (0..<12).map { Float($0) / 4 }
        for file in ["dtypes.safetensors", "dtypes_p2.pth", "dtypes_p4.pth", "deflated.pth"] {
            let path = CheckpointFixtures.misc(file)
            let sd = file.hasSuffix(".safetensors") ? try SafetensorsReader.load(path: path) : try TorchCheckpoint.load(path: path)
            func t(_ name: String) throws -> Tensor { try XCTUnwrap(sd.tensors[name], "\(file): \(name)") }
            for name in ["f32", "f16", "bf16"] {
                XCTAssertEqual(try t(name).dtype, .float32, "\(file) \(name)")
                XCTAssertEqual(try t(name).shape, [3, 4], "\(file) \(name)")
                XCTAssertEqual(try t(name).floats, a, "\(file) \(name)")
            }
            XCTAssertEqual(try t("i64").int64s, [-2, -1, 0, 1, 2], file)
            XCTAssertEqual(try t("i32").dtype, .int64, file)
            XCTAssertEqual(try t("i32").int64s, [0, 3, 6, 9], file)
            XCTAssertEqual(try t("scalar").shape, [], file)
            XCTAssertEqual(try t("scalar").floats, [2.5], file)
            if file.hasSuffix(".pth") {
                XCTAssertEqual(try t("view").floats, [-1, 0, 1, 2, 3, 4], "\(file): a view at storage offset 4")
                XCTAssertEqual(try t("param").floats, a.map { $0 * 2 }, "\(file): a Parameter")
                XCTAssertEqual(sd.names, ["f32", "f16", "bf16", "i64", "i32", "scalar", "view", "param"], file)
            }
            // Float32 data is a view, of the mapped file or of the inflated entry: never copied again.
            XCTAssertTrue(try t("f32").storage.isBorrowed, file)
        }
    }

    func testNonContiguousAndLegacyCheckpointsAreRefusedWithAReason() throws {
        let nc = message { try TorchCheckpoint.load(path: CheckpointFixtures.misc("noncontiguous.pth")) }
        XCTAssertTrue(nc.contains("'w' is not contiguous") && nc.contains("noncontiguous.pth"), nc)
        let legacy = message { try ModelLoader.load(CheckpointFixtures.misc("legacy.pth")) }
        XCTAssertTrue(legacy.contains("legacy torch.save format") && legacy.contains("legacy.pth"), legacy)
    }

    // MARK: pickles that would run code

    /// The committed malicious checkpoint calls os.system when Python unpickles it. The reader
    /// refuses it, names the global, and nothing runs.
    func testPickleCallingOsSystemIsRefusedAndNothingRuns() throws {
        let marker = "/tmp/cnx_pwned_marker"
        try? FileManager.default.removeItem(atPath: marker)
        let path = CheckpointFixtures.misc("malicious.pth")
        for load in [{ _ = try TorchCheckpoint.load(path: path) }, { _ = try ModelLoader.load(path) }] {
            let m = message { try load() }
            XCTAssertTrue(m.contains("refused") && m.contains("'posix.system'"), m)
            XCTAssertTrue(m.contains("malicious.pth") && m.contains("data.pkl, byte "), m)
            XCTAssertTrue(m.contains("Nothing was executed"), m)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the payload ran")
    }

    func testEveryOtherGlobalAndOpcodeIsRefusedByName() throws {
        func unpickle(_ bytes: [UInt8]) -> String {
            message { try bytes.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, what: "test.pkl").load() } }
        }
        var eval = PickleBytes()
        eval.global("builtins", "eval"); eval.op(0x28); eval.string("1+1"); eval.op(0x74); eval.op(0x52); eval.stop()
        XCTAssertTrue(unpickle(eval.bytes).contains("'builtins.eval' (GLOBAL)"), unpickle(eval.bytes))

        var stackGlobal = PickleBytes()
        stackGlobal.bytes[1] = 4
        stackGlobal.string("os"); stackGlobal.string("system"); stackGlobal.op(0x93); stackGlobal.stop()
        XCTAssertTrue(unpickle(stackGlobal.bytes).contains("'os.system' (STACK_GLOBAL)"), unpickle(stackGlobal.bytes))

        var subprocess = PickleBytes()
        subprocess.global("subprocess", "Popen"); subprocess.stop()
        XCTAssertTrue(unpickle(subprocess.bytes).contains("'subprocess.Popen'"))

        for (code, name) in [
            (UInt8(0x81), "NEWOBJ"), (0x69, "INST"), (0x6f, "OBJ"), (0x92, "NEWOBJ_EX"), (0x82, "EXT1"), (0x50, "PERSID"),
            (0xff, "unknown opcode 0xff"),
        ] {
            var p = PickleBytes()
            p.op(0x4e); p.op(code); p.stop()
            let m = unpickle(p.bytes)
            XCTAssertTrue(m.contains(name) && m.contains("refused") && m.contains("byte 3"), m)
        }
        // A storage type may be named in a persistent id, not called.
        var call = PickleBytes()
        call.global("torch", "FloatStorage"); call.op(0x29); call.op(0x52); call.stop()
        XCTAssertTrue(unpickle(call.bytes).contains("may only appear in a persistent id"))
        // An accepted global with arguments it does not take is not called either.
        var odd = PickleBytes()
        odd.global("torch._utils", "_rebuild_tensor_v2"); odd.op(0x29); odd.op(0x52); odd.stop()
        XCTAssertTrue(unpickle(odd.bytes).contains("_rebuild_tensor_v2 takes"))
        // Truncation and a missing STOP.
        XCTAssertTrue(unpickle([0x80, 2, 0x58, 9, 0, 0, 0, 0x61]).contains("truncated"))
        XCTAssertTrue(unpickle([0x80, 2, 0x4e]).contains("without STOP"))
        XCTAssertTrue(unpickle([0x80, 2, 0x68, 7, 0x2e]).contains("memo entry 7"))
    }

    // MARK: archives

    func testHandWrittenCheckpointReadsAndItsLiesAreCaught() throws {
        let data = floatBytes([1, 2, 3, 4, 5, 6])
        func archive(_ pickle: [UInt8], storage: [UInt8]? = data) -> [UInt8] {
            var entries: [(name: String, method: UInt16, data: [UInt8], size: Int?)] = [("ckpt/data.pkl", 0, pickle, nil)]
            if let storage { entries.append(("ckpt/data/0", 0, storage, nil)) }
            entries.append(("ckpt/byteorder", 0, Array("little".utf8), nil))
            return makeZip(entries)
        }
        let good = try write(archive(PickleBytes.stateDict(shape: [2, 2], strides: [2, 1], offset: 1, numel: 6)), "good.pth")
        let sd = try TorchCheckpoint.load(path: good)
        XCTAssertEqual(sd.tensors["w"]?.floats, [2, 3, 4, 5])
        XCTAssertEqual(sd.tensors["w"]?.shape, [2, 2])

        let cases: [([UInt8], String)] = [
            (
                archive(PickleBytes.stateDict(shape: [2, 2], strides: [2, 1], numel: 6), storage: nil),
                "storage 'ckpt/data/0' is not in the archive"
            ),
            (
                archive(PickleBytes.stateDict(shape: [2, 2], strides: [2, 1], numel: 60)),
                "holds 24 bytes, but 60 elements of FloatStorage are 240 bytes"
            ),
            (archive(PickleBytes.stateDict(shape: [2, 2], strides: [2, 1], offset: 3, numel: 6)), "elements 3..<7 lie outside"),
            (archive(PickleBytes.stateDict(shape: [2, 3], strides: [1, 2], numel: 6)), "not contiguous"),
        ]
        for (i, (bytes, expected)) in cases.enumerated() {
            let m = message { try TorchCheckpoint.load(path: try self.write(bytes, "bad\(i).pth")) }
            XCTAssertTrue(m.contains(expected) && m.contains("bad\(i).pth") && m.contains("tensor 'w'"), m)
        }
        let bigEndian = makeZip([
            ("x/data.pkl", 0, PickleBytes.stateDict(shape: [2], strides: [1], numel: 2), nil), ("x/data/0", 0, data, nil),
            ("x/byteorder", 0, Array("big".utf8), nil),
        ])
        XCTAssertTrue(message { try TorchCheckpoint.load(path: try self.write(bigEndian, "big.pth")) }.contains("only little-endian"))
        // A corrupted pickle fails its CRC.
        var corrupt = archive(PickleBytes.stateDict(shape: [2], strides: [1], numel: 2))
        corrupt[50] ^= 0xff  // inside the pickle, which starts at byte 43
        XCTAssertTrue(message { try TorchCheckpoint.load(path: try self.write(corrupt, "crc.pth")) }.contains("CRC-32"))
    }

    func testZipBombsAndBrokenArchivesAreRefused() throws {
        // 100,000 zero bytes, raw-deflated (114 bytes).
        let deflated: [UInt8] =
            [237, 193, 49, 1, 0, 0, 0, 194, 160, 245, 79, 109, 13, 15, 160] + [UInt8](repeating: 0, count: 96) + [128, 87, 3]
        let bomb = makeZip([("b/data.pkl", 8, deflated, 1 << 31)])
        let m1 = message { try TorchCheckpoint.load(path: try self.write(bomb, "bomb.pth")) }
        XCTAssertTrue(m1.contains("zip bomb") && m1.contains("'b/data.pkl'"), m1)

        let liar = makeZip([("b/data.pkl", 8, deflated, 1000)])
        let m2 = message { try TorchCheckpoint.load(path: try self.write(liar, "liar.pth")) }
        XCTAssertTrue(m2.contains("inflates to more than its declared 1000 bytes"), m2)

        // Two directory entries over the same bytes: the overlapping-entry bomb.
        var overlap = makeZip([("o/data.pkl", 0, [0x80, 2, 0x4e, 0x2e], nil), ("o/data/0", 0, [1, 2, 3, 4], nil)])
        // Point the second directory entry's local-header offset at the first entry.
        let dirStart = Int(overlap[overlap.count - 6]) | Int(overlap[overlap.count - 5]) << 8
        let second = dirStart + 46 + "o/data.pkl".utf8.count
        overlap.replaceSubrange(second + 42..<second + 46, with: [0, 0, 0, 0])
        let m3 = message { try TorchCheckpoint.load(path: try self.write(overlap, "overlap.pth")) }
        XCTAssertTrue(m3.contains("overlap"), m3)

        let truncated = Array(makeZip([("t/data.pkl", 0, [0x80, 2, 0x4e, 0x2e], nil)]).dropLast(10))
        let m4 = message { try ModelLoader.load(try self.write(truncated, "truncated.pth")) }
        XCTAssertTrue(m4.contains("truncated.pth") && m4.contains("end-of-central-directory"), m4)

        let noPickle = makeZip([("t/other", 0, [1], nil)])
        XCTAssertTrue(message { try TorchCheckpoint.load(path: try self.write(noPickle, "nopickle.pth")) }.contains("without data.pkl"))
    }

    // MARK: safetensors

    func safetensors(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { out += $0 }
        return out + h + data
    }

    func testHostileSafetensorsGiveClearErrors() throws {
        let sixteen = [UInt8](repeating: 0, count: 16)
        let cases: [([UInt8], [String])] = [
            ([1, 2, 3], ["truncated", "8-byte header length"]),
            (safetensors("{}", length: 1 << 40), ["header length 1099511627776 at byte 0 runs past the end"]),
            (safetensors("{\"a\": {", data: sixteen), ["JSON header (bytes 8..<15) does not parse"]),
            (safetensors("[1, 2]"), ["is not an object"]),
            (
                safetensors(#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}}"#, data: sixteen),
                ["tensor 'w'", "data_offsets [0, 32]", "file bytes 70..<102", "past the end of the 86-byte file"]
            ),
            (
                safetensors(#"{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}"#, data: sixteen),
                ["tensor 'w'", "shape [2, 3] of F32 needs 24 bytes", "hold 16"]
            ),
            (
                safetensors(
                    #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
                    data: sixteen),
                ["tensors 'a'", "and 'b'", "overlap"]
            ),
            (
                safetensors(#"{"w": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}"#, data: sixteen),
                ["tensor 'w'", "unsupported dtype 'C64'"]
            ),
            (
                safetensors(#"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, data: sixteen),
                ["tensor 'w'", "non-negative integers"]
            ),
            (
                safetensors(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#, data: sixteen),
                ["tensor 'w'", "begin <= end"]
            ),
            (
                safetensors(#"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#, data: sixteen),
                ["tensor 'w'", "overflows"]
            ),
        ]
        for (i, (bytes, expected)) in cases.enumerated() {
            let path = try write(bytes, "bad\(i).safetensors")
            for load in [{ _ = try SafetensorsReader.load(path: path) }, { _ = try ModelLoader.load(path) }] {
                let m = message { try load() }
                XCTAssertTrue(m.hasPrefix(path), m)
                for s in expected { XCTAssertTrue(m.contains(s), "case \(i): '\(s)' not in: \(m)") }
            }
        }
        // Well formed, with metadata, an empty tensor and padding: accepted.
        let ok = safetensors(
            #"{"__metadata__": {"format": "pt"}, "e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}   "#,
            data: floatBytes([1, 2, 3, 4]))
        let sd = try SafetensorsReader.load(path: try write(ok, "ok.safetensors"))
        XCTAssertEqual(sd.metadata, ["format": "pt"])
        XCTAssertEqual(sd.tensors["w"]?.floats, [1, 2, 3, 4])
        XCTAssertEqual(sd.tensors["e"]?.shape, [0])
    }

    // MARK: naming schemes

    func testUnknownAndMissingKeysAreListedWithTheClosestScheme() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_linear" })
        var sd = try SafetensorsReader.load(path: e.path("model.safetensors"))
        sd.tensors["head.fc.weight"] = nil
        sd.names.removeAll { $0 == "head.fc.weight" }
        for k in 0..<25 {
            sd.names.append("extra.\(k)")
            sd.tensors["extra.\(k)"] = Tensor(floats: [1], shape: [1])
        }
        let m = message { try StateDictGraph.build(sd, format: "safetensors", source: "x") }
        XCTAssertTrue(m.contains("the closest is timm"), m)
        XCTAssertTrue(m.contains("25 unknown: extra.0, extra.1") && m.contains("extra.19, … (25 in all)") && !m.contains("extra.20,"), m)
        XCTAssertTrue(m.contains("1 missing: head.fc.weight"), m)

        // The same keys under a DataParallel prefix are fine; a torchvision dict with a typo names torchvision.
        let prefixed = StateDict(
            names: sd.names.filter { !$0.hasPrefix("extra") }.map { "module." + $0 },
            tensors: Dictionary(
                uniqueKeysWithValues: sd.tensors.filter { !$0.key.hasPrefix("extra") }.map { ("module." + $0.key, $0.value) }))
        XCTAssertTrue(message { try StateDictGraph.build(prefixed, format: "pth", source: "x") }.contains("1 missing: head.fc.weight"))
        let tv = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "torchvision" })
        var tvsd = try SafetensorsReader.load(path: tv.path("model.safetensors"))
        tvsd.names = tvsd.names.map { $0 == "features.1.0.layer_scale" ? "features.1.0.layerscale" : $0 }
        tvsd.tensors["features.1.0.layerscale"] = tvsd.tensors.removeValue(forKey: "features.1.0.layer_scale")
        let m2 = message { try StateDictGraph.build(tvsd, format: "safetensors", source: "x") }
        XCTAssertTrue(m2.contains("the closest is torchvision") && m2.contains("1 unknown: features.1.0.layerscale"), m2)

        // Nothing like a ConvNeXt.
        let other = StateDict(names: ["fc.weight"], tensors: ["fc.weight": Tensor(floats: [1], shape: [1, 1])])
        XCTAssertTrue(message { try StateDictGraph.build(other, format: "pth", source: "x") }.contains("1 unknown: fc.weight"))
    }

    /// Key names come from the file: a newline in one is escaped, and the message stays one line.
    func testMessagesStayOneLine() throws {
        let bytes = safetensors(#"{"bad\nkey\u001b[31m": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, data: floatBytes([1]))
        let path = try write(bytes, "newline.safetensors")
        let m = message { try CheckpointReader.load(path: path, kind: .safetensors) }
        XCTAssertTrue(m.contains("1 unknown: bad\\nkey\\u{1B}[31m"), m)
        XCTAssertFalse(m.contains("\n") || m.contains("\u{1B}"), m)
    }

    func testShapeMismatchNamesTheTensor() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "reference" })
        var sd = try SafetensorsReader.load(path: e.path("model.safetensors"))
        sd.tensors["stages.1.0.norm.weight"] = Tensor(floats: [1, 2, 3], shape: [3])
        let m = message { try StateDictGraph.build(sd, format: "safetensors", source: "x") }
        XCTAssertTrue(m.contains("tensor 'stages.1.0.norm.weight' has shape [3]; expected [8]"), m)
        sd = try SafetensorsReader.load(path: e.path("model.safetensors"))
        sd.tensors["head.weight"] = Tensor(floats: [Float](repeating: 0, count: 20), shape: [2, 10])
        XCTAssertTrue(
            message { try StateDictGraph.build(sd, format: "safetensors", source: "x") }.contains(
                "'head.weight' has shape [2, 10]; expected (classes, 16)"))
    }
}
