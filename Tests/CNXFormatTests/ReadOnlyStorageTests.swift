import CNXFormat
import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// A tensor loaded from a `.cnx` file is a read-only view of the mapping (mapped `PROT_READ`, so
/// a write through it would crash the process). Writing through the API copies the bytes first
/// and never reaches the file.
final class ReadOnlyStorageTests: XCTestCase {
    func testWritingALoadedTensorCopiesItAndLeavesTheFileAlone() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("every.cnx").path
        try CNXWriter.write(everyKindModel(), to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))

        let loaded = try CNXReader.load(path: path)
        let t = try XCTUnwrap(loaded.graph.initializers["t.float32"])
        let sharing = t.reshaped([15])
        let original = bytes(of: t)  // raw bit patterns, some of them NaN
        XCTAssertTrue(t.storage.isBorrowed)
        XCTAssertFalse(t.storage.isWritable, "a mapped tensor must be a read-only view")

        t.withUnsafeMutableFloats { $0[0] = 42 }

        XCTAssertTrue(t.storage.isWritable)
        XCTAssertFalse(t.storage.isBorrowed, "the write did not give the tensor memory of its own")
        XCTAssertEqual(t.floats[0], 42)
        XCTAssertEqual(bytes(of: t)[4...], original[4...])
        XCTAssertEqual(bytes(of: sharing), bytes(of: t), "a tensor sharing the storage sees the copy")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "the file was written")
        XCTAssertEqual(bytes(of: try XCTUnwrap(try CNXReader.load(path: path).graph.initializers["t.float32"])), original)
        // The other tensors of the file are still views of the mapping.
        XCTAssertTrue(try XCTUnwrap(loaded.graph.initializers["t.int64"]).storage.isBorrowed)
    }

    func testAViewOfAFileIsCopiedOnWrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bytes").path
        let content = (0..<64).map { UInt8($0) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let file = try MappedFile(path: path)
        let view = file.storage(offset: 8, byteCount: 16)
        XCTAssertFalse(view.isWritable)
        view.withUnsafeMutableBytes { $0[0] = 0xFF }
        XCTAssertEqual(view.withUnsafeBytes { Array($0) }, [0xFF] + content[9..<24])
        XCTAssertEqual(file.withUnsafeBytes { Array($0) }, content, "the mapping changed")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(content))
    }

    func testASliceIsAReadOnlyViewOfItsParent() {
        let parent = Tensor(floats: [1, 2, 3, 4], shape: [4])
        let slice = Tensor(dtype: .float32, shape: [2], storage: Storage(slicing: parent.storage, offset: 8, byteCount: 8))
        XCTAssertEqual(slice.floats, [3, 4])
        parent.withUnsafeMutableFloats { $0[2] = 30 }
        XCTAssertEqual(slice.floats, [30, 4], "a slice is a view, not a copy")
        slice.withUnsafeMutableFloats { $0[1] = 40 }
        XCTAssertEqual(slice.floats, [30, 40])
        XCTAssertEqual(parent.floats, [1, 2, 30, 4], "writing a slice wrote its parent")
    }

    func testALentWritableViewWritesTheLendersMemory() {
        final class Arena {
            var values: [Float] = [0, 0, 0]
        }
        let arena = Arena()
        arena.values.withUnsafeMutableBytes { raw in
            let view = Storage(borrowingMutable: raw.baseAddress!, byteCount: raw.count, owner: arena)
            XCTAssertTrue(view.isWritable)
            Tensor(dtype: .float32, shape: [3], storage: view).withUnsafeMutableFloats { $0[1] = 7 }
        }
        XCTAssertEqual(arena.values, [0, 7, 0])
    }
}
