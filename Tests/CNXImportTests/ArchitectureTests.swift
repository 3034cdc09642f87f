import CNXConvert
import CNXGraph
import CNXImport
import CNXIO
import CNXTestSupport
import XCTest

/// `Architecture.recognise` reads every family right: blocks whatever their depthwise kernel
/// (test_convnext3's 7, 5, 5, 3), and classes only where the output is a classifier's product.
final class ArchitectureTests: XCTestCase {
    func testEveryFamilyExportIsRecognisedWithItsStagesStemAndClasses() throws {
        for e in try FamilyFixtures.manifest() {
            let graph = try ONNXReader.load(path: e.onnx)
            let a = try XCTUnwrap(Architecture.recognise(graph), e.name)
            XCTAssertEqual(a.depths, e.depths, e.name)
            XCTAssertEqual(a.dims, e.dims, e.name)
            XCTAssertFalse(a.family.contains("isotropic"), e.name)
            XCTAssertEqual(a.stem.hasPrefix("overlapping"), e.stem != "patch", "\(e.name): \(a.stem)")
            // pool-norm-fc has classes; pool-norm, norm-pool and an MLP head's pool-norm-fc-gelu
            // (headless: the hidden features) have none.
            let classifier = e.head.hasSuffix("fc")
            let expected = try NPY.read(path: e.path(e.cases[0].expected))
            XCTAssertEqual(a.classes, classifier ? expected.shape.last : nil, "\(e.name) (\(e.head))")
        }
    }

    /// The checkpoint reader's graphs too: test_convnext3's layout from a bare file and a hub
    /// folder, and the headless V2.
    func testCheckpointGraphsAreRecognised() throws {
        for (name, form) in [
            ("timm_silu_kernels", "hub"), ("timm_silu_kernels", "model.safetensors"), ("v2_headless", "hub"),
            ("timm_mlp_head", "hub"), ("hf_convnext", "hf"),
        ] {
            let e = try Families.entry(name)
            let flags = e.forms.first { $0.path == form }?.flags ?? [:]
            let graph = try ModelLoader.load(e.path(form), options: try Families.options(flags)).graph
            let a = try XCTUnwrap(Architecture.recognise(graph), name)
            XCTAssertEqual(a.depths.count, 4, "\(name): \(a.depths)")
            XCTAssertEqual(a.dims, [4, 8, 12, 16], name)
            let logits = try e.expected(e.outputs[0])
            XCTAssertEqual(a.classes, name == "v2_headless" ? nil : logits.shape.last, name)
        }
    }

    /// Depthwise convolutions that are not blocks are not counted: one with stride 2, an even
    /// kernel, and a grouped convolution with fewer groups than channels.
    func testNearMissConvolutionsAreNotBlocks() throws {
        func w(_ shape: [Int]) -> Tensor { Tensor(zeros: .float32, shape: shape) }
        let conv = { (name: String, x: String, y: String, group: Int, strides: [Int], pads: Int) in
            Node(
                name: name, op: .conv, inputs: [x, "\(name).w"], outputs: [y],
                attributes: ["group": .int(group), "strides": .ints(strides), "pads": .ints([pads, pads, pads, pads])])
        }
        let graph = Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(3), .fixed(32), .fixed(32)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [
                conv("stem", "x", "a", 1, [4, 4], 0), conv("dw", "a", "b", 8, [1, 1], 2),
                conv("dw_s2", "b", "c", 8, [2, 2], 1), conv("dw_even", "c", "d", 8, [1, 1], 1),
                conv("grouped", "d", "y", 4, [1, 1], 1),
            ],
            initializers: [
                "stem.w": w([8, 3, 4, 4]), "dw.w": w([8, 1, 5, 5]), "dw_s2.w": w([8, 1, 3, 3]),
                "dw_even.w": w([8, 1, 2, 2]), "grouped.w": w([8, 2, 3, 3]),
            ])
        let a = try XCTUnwrap(Architecture.recognise(graph))
        XCTAssertEqual(a.depths, [1])
        XCTAssertEqual(a.dims, [8])
        XCTAssertNil(a.classes)
    }
}
