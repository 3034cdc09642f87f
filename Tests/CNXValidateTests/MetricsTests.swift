@testable import CNXValidate
import XCTest

/// The metrics on small cases worked out by hand.
final class MetricsTests: XCTestCase {
    // Two samples, six classes. Sample 0: the reference swaps the top two classes; sample 1: it
    // swaps the bottom two.
    let model: [Float] = [1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1]
    let reference: [Float] = [1, 2, 3, 4, 6, 5, 6, 5, 4, 3, 1, 2]

    func testAgreementOverlapCosineSQNRByHand() {
        var m = MetricsAccumulator()
        m.add(model: model, reference: reference, classes: 6)
        XCTAssertEqual(m.samples, 2)
        XCTAssertEqual(m.k, 5)
        // Top-1: 5 vs 4 (differ), 0 vs 0 (agree).
        XCTAssertEqual(m.top1Agreement, 0.5)
        // Top-5: {5,4,3,2,1} vs {4,5,3,2,1}: 5 shared; {0,1,2,3,4} vs {0,1,2,3,5}: 4 shared.
        XCTAssertEqual(m.top5Overlap, (1 + 0.8) / 2, accuracy: 1e-12)
        // Each row: dot 90, both norms^2 91.
        XCTAssertEqual(m.meanCosine, 90.0 / 91.0, accuracy: 1e-12)
        // sum ref^2 = 2 x 91 = 182; sum diff^2 = 4.
        XCTAssertEqual(m.sqnrDB, 10 * log10(182.0 / 4.0), accuracy: 1e-9)
        XCTAssertEqual(m.sqnrDB, 16.580, accuracy: 1e-3)
        XCTAssertEqual(m.maxAbsDiff, 1)
        XCTAssertFalse(m.hasLabels)
    }

    func testAccuraciesAndPerClassByHand() {
        var m = MetricsAccumulator()
        // Labels 4 and 1: the model gets neither at top-1, the reference gets the first; both
        // have each label in their top 5.
        m.add(model: model, reference: reference, classes: 6, labels: [4, 1])
        XCTAssertEqual(m.modelTop1Accuracy, 0)
        XCTAssertEqual(m.referenceTop1Accuracy, 0.5)
        XCTAssertEqual(m.modelTop5Accuracy, 1)
        XCTAssertEqual(m.referenceTop5Accuracy, 1)
        XCTAssertEqual(m.accuracyDropPoints, 50)
        XCTAssertEqual(
            m.classAccuracies,
            [
                ClassAccuracy(id: 1, samples: 1, model: 0, reference: 0),
                ClassAccuracy(id: 4, samples: 1, model: 0, reference: 1),
            ])
        XCTAssertEqual(m.classAccuracies[1].changePoints, -100)
    }

    func testBatchesAccumulateLikeOneBatch() {
        var whole = MetricsAccumulator(), parts = MetricsAccumulator()
        whole.add(model: model, reference: reference, classes: 6, labels: [4, 1])
        parts.add(model: Array(model[0..<6]), reference: Array(reference[0..<6]), classes: 6, labels: [4])
        parts.add(model: Array(model[6...]), reference: Array(reference[6...]), classes: 6, labels: [1])
        XCTAssertEqual(whole.sqnrDB, parts.sqnrDB)
        XCTAssertEqual(whole.top5Overlap, parts.top5Overlap)
        XCTAssertEqual(whole.modelTop1, parts.modelTop1)
        XCTAssertEqual(whole.referenceTop1, parts.referenceTop1)
    }

    func testIdenticalLogitsAndEdgeCases() {
        var m = MetricsAccumulator()
        m.add(model: [0, 0, 1], reference: [0, 0, 1], classes: 3)
        XCTAssertEqual(m.sqnrDB, .infinity)
        XCTAssertEqual(m.meanCosine, 1)
        XCTAssertEqual(m.k, 3)
        XCTAssertEqual(topK([1, 1, 1], 2), [0, 1], "ties go to the lower index, as argmax")
        XCTAssertEqual(topK([3, 9, 1, 9, 5], 3), [1, 3, 4])
        let zero: [Float] = [0, 0], one: [Float] = [1, 0]
        zero.withUnsafeBufferPointer { z in
            one.withUnsafeBufferPointer { o in
                XCTAssertEqual(cosineSimilarity(z, z), 1)
                XCTAssertEqual(cosineSimilarity(z, o), 0)
            }
        }
    }

    func result(_ m: MetricsAccumulator) -> ValidationResult {
        ValidationResult(
            modelPath: "m.cnx", modelRuntime: "cnx fast runtime", referencePath: "r.onnx", referenceRuntime: "reference executor",
            dataPath: "d.npy", sampleShape: [3, 32, 32], labelSource: "l.npy", classNames: nil, preprocessing: nil,
            metrics: m, modelSeconds: 0.5, referenceSeconds: 2, perLayer: nil)
    }

    func testMaxDropBudget() {
        var labelled = MetricsAccumulator()
        labelled.add(model: model, reference: reference, classes: 6, labels: [4, 1])
        // 50 points lost.
        XCTAssertFalse(result(labelled).withinBudget(maxDrop: 49.9))
        XCTAssertTrue(result(labelled).withinBudget(maxDrop: 50))
        var unlabelled = MetricsAccumulator()
        unlabelled.add(model: model, reference: reference, classes: 6)
        // 50% agreement: needs a budget of 50 points.
        XCTAssertFalse(result(unlabelled).withinBudget(maxDrop: 49))
        XCTAssertTrue(result(unlabelled).withinBudget(maxDrop: 50))
    }

    func testJSONHasTheDocumentedKeys() throws {
        var m = MetricsAccumulator()
        m.add(model: model, reference: reference, classes: 6, labels: [4, 1])
        let o = try parseJSON(result(m).json(perClass: true, maxDrop: 10))
        XCTAssertEqual(o["samples"] as? Int, 2)
        XCTAssertEqual(o["top1_agreement"] as? Double, 0.5)
        XCTAssertEqual(try XCTUnwrap(o["mean_cosine"] as? Double), 90.0 / 91.0, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(o["sqnr_db"] as? Double), 16.58, accuracy: 0.01)
        XCTAssertEqual(o["top1_accuracy"] as? Double, 0)
        XCTAssertEqual(o["reference_top1_accuracy"] as? Double, 0.5)
        XCTAssertEqual(o["within_budget"] as? Bool, false)
        XCTAssertEqual((o["per_class"] as? [Any])?.count, 2)
        XCTAssertEqual((o["model"] as? [String: Any])?["images_per_second"] as? Double, 4)
        // Identical logits: SQNR is infinite, written as null.
        var same = MetricsAccumulator()
        same.add(model: model, reference: model, classes: 6)
        let s = try parseJSON(result(same).json())
        XCTAssertTrue(s["sqnr_db"] is NSNull)
        XCTAssertNil(s["top1_accuracy"])
        XCTAssertEqual(JSON.string("a\"b\\c\n").text, "\"a\\\"b\\\\c\\n\"")
    }
}
