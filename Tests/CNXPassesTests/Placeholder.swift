import XCTest

final class CNXPassesTestsPlaceholder: XCTestCase {
    func testBuilds() {}
}
