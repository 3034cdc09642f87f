import XCTest

final class ReliabilityPlaceholder: XCTestCase {
    func testBuilds() {}
}
