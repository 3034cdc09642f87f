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

extension CNXError {
    /// The message with control characters escaped (`\n` as `\\n`, ESC as `\u{1B}`): names read from
    /// a file can hold anything, and a message must stay one line that cannot drive a terminal.
    public var escapingControlCharacters: CNXError {
        CNXError(message.escapingControlCharacters)
    }
}

extension StringProtocol {
    /// The text with C0 and C1 control characters escaped (`\n` as `\\n`, ESC as `\u{1B}`), the
    /// rest as it is: the one way the project makes text read from a file safe for a one-line
    /// message on a terminal.
    public var escapingControlCharacters: String {
        var out = ""
        for s in unicodeScalars {
            if s.value < 0x20 || (0x7F...0x9F).contains(s.value) {
                out += s.escaped(asASCII: false)
            } else {
                out.unicodeScalars.append(s)
            }
        }
        return out
    }
}
