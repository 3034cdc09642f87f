import XCTest

final class CNXFormatTestsPlaceholder: XCTestCase {
    func testBuilds() {}
}
