import XCTest

final class CNXValidatePlaceholder: XCTestCase {
    func testBuilds() {}
}
