import XCTest

final class CKernelsTestsPlaceholder: XCTestCase {
    func testBuilds() {}
}
