import Foundation
import XCTest

extension XCTestCase {
    /// A new empty folder for this test, removed when the test ends (passed, failed or thrown).
    public func scratchDirectory() throws -> URL {
        let url = try temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
