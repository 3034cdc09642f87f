import Foundation

/// The one error type the library throws: a message for people that names the file, and the node,
/// tensor or byte offset where there is one.
public struct CNXError: Error, CustomStringConvertible, Equatable {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }

    /// Prefixes the message with a file path unless it already names it.
    public func inFile(_ path: String) -> CNXError {
        message.hasPrefix(path) ? self : CNXError("\(path): \(message)")
    }
}

extension CNXError: LocalizedError {
    public var errorDescription: String? { message }
}
