import CNXGraph
import CNXImport
import CNXTestSupport
import Foundation
import XCTest

/// Imported float32 weights are read-only views of the mapped checkpoint (or of the entry
/// inflated from it): writing one through the API copies it first, and the file is never written.
final class ReadOnlyViewTests: XCTestCase {
    func testWritingAnImportedWeightCopiesItAndLeavesTheCheckpointAlone() throws {
        let a: [Float] = (0..<12).map { Float($0) / 4 }
        for file in ["dtypes.safetensors", "dtypes_p2.pth", "deflated.pth"] {
            let path = CheckpointFixtures.misc(file)
            let load = { file.hasSuffix(".safetensors") ? try SafetensorsReader.load(path: path) : try TorchCheckpoint.load(path: path) }
            let before = try Data(contentsOf: URL(fileURLWithPath: path))
            let t = try XCTUnwrap(try load().tensors["f32"], file)
            XCTAssertTrue(t.storage.isBorrowed, file)
            XCTAssertFalse(t.storage.isWritable, "\(file): an imported view must be read-only")

            t.withUnsafeMutableFloats { $0[0] = 99 }

            XCTAssertFalse(t.storage.isBorrowed, "\(file): the write did not copy the view")
            XCTAssertEqual(t.floats, [99] + a.dropFirst(), file)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "\(file) was written")
            XCTAssertEqual(try load().tensors["f32"]?.floats, a, file)
        }
    }
}
