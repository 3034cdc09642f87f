import CNXFormat
import CNXImport
import CNXGraph
import Foundation

/// What a command writes, so that the output's name and any file it would replace can be checked.
public enum OutputKind: String, Sendable {
    case cnx, npy, npz, json, html

    /// The file name extension this kind is written with.
    public var fileExtension: String { "." + rawValue }

    /// What a person calls it, in messages.
    public var title: String {
        switch self {
        case .cnx: return "a .cnx model"
        case .npy: return "a .npy array"
        case .npz: return "an .npz archive"
        case .json: return "a JSON file"
        case .html: return "an HTML page"
        }
    }

    /// Whether the first bytes of a file are this kind's.
    func matches(_ head: [UInt8]) -> Bool {
        switch self {
        case .cnx: return CNXReader.hasMagic(head)
        case .npy: return head.starts(with: [0x93] + Array("NUMPY".utf8))
        case .npz: return head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06])
        case .json:
            let first = head.first { !(" \t\r\n" as String).utf8.contains($0) }
            return first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
        case .html:
            let text = String(decoding: head.prefix(64), as: UTF8.self).lowercased()
            return text.contains("<!doctype html") || text.contains("<html")
        }
    }
}

/// A file this command reads, and what it is to the command (for messages).
public struct ReadFile: Sendable {
    public var path: String
    public var role: String
    public init(_ path: String, role: String) {
        self.path = path
        self.role = role
    }
}

/// Inputs are never replaced: before a command writes anything it checks that the output is not
/// one of the files it reads (compared as the same file on disk, so `./a.onnx`, `a.onnx`, a
/// symbolic link and a hard link to it are all the same), that its name ends as the format it
/// gets, that its folder exists, and that a file already there holds the same format (so a `.cnx`
/// is never written over an ONNX file or a `.npy` over a model); `force` allows the last two.
public enum OutputGuard {
    /// - Throws: `CNXError`, one line naming the output and the reason.
    public static func check(output: String, kind: OutputKind, reads: [ReadFile], force: Bool = false) throws {
        guard !output.isEmpty else { throw CNXError("the output file name is empty") }
        let parent = (output as NSString).deletingLastPathComponent
        let folder = parent.isEmpty ? "." : parent
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CNXError("\(output): is a folder; give the name of the \(kind.fileExtension) file to write")
        }
        if let clash = sameFile(output, reads) {
            let how = clash.path == output ? "" : " (\(clash.path))"
            throw CNXError(
                "\(output): is \(clash.role)\(how), which this command reads; refusing to write over it (choose another output name)")
        }
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
            throw CNXError("\(folder): no such folder (for the output \(output))")
        }
        guard isDirectory.boolValue else { throw CNXError("\(folder): not a folder (for the output \(output))") }
        guard access(folder, W_OK) == 0 else { throw CNXError("\(folder): cannot write in this folder (for the output \(output))") }
        if force { return }
        let head = firstBytes(output, 64)
        if !head.isEmpty, !kind.matches(head) {
            throw CNXError(
                "\(output): exists and holds \(describe(head)), not \(kind.title); refusing to replace it (choose another name, or --force)"
            )
        }
        guard output.lowercased().hasSuffix(kind.fileExtension) else {
            let found = (output as NSString).pathExtension
            throw CNXError(
                "\(output): the output is \(kind.title) and its name should end in \(kind.fileExtension)"
                    + (found.isEmpty ? "" : ", not .\(found)") + " (--force writes it anyway)")
        }
    }

    /// The files behind a model path: the file itself (for a folder, its weights and
    /// `config.json`), the `config.json` beside a checkpoint, and an ONNX file's external data
    /// (listed in the loaded graph's `external_data` metadata).
    public static func modelFiles(_ path: String, graphMetadata: [String: String] = [:]) -> [ReadFile] {
        var files = [ReadFile(path, role: "the input model")]
        let weights = ModelLoader.sourceFile(path)
        if weights != path { files.append(ReadFile(weights, role: "the input model's weights")) }
        let folder = URL(fileURLWithPath: weights).deletingLastPathComponent()
        let config = folder.appendingPathComponent("config.json").path
        if FileManager.default.fileExists(atPath: config) { files.append(ReadFile(config, role: "the model's config.json")) }
        if let external = graphMetadata["external_data"] {
            let modelFolder = URL(fileURLWithPath: path).deletingLastPathComponent()
            for name in external.components(separatedBy: ", ") where !name.isEmpty {
                files.append(ReadFile(modelFolder.appendingPathComponent(name).path, role: "the model's external data"))
            }
        }
        return files
    }

    /// A data path (a file, or a folder of images) as files read.
    public static func dataFiles(_ path: String, role: String) -> [ReadFile] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return [ReadFile(path, role: role)]
        }
        var files: [ReadFile] = []
        if let walker = FileManager.default.enumerator(atPath: path) {
            for case let name as String in walker {
                files.append(ReadFile(URL(fileURLWithPath: path).appendingPathComponent(name).path, role: role))
                if files.count > 200_000 { break }
            }
        }
        return files
    }

    /// The read file that is the same file as `output` (same device and inode, following links;
    /// or the same resolved path), if any.
    static func sameFile(_ output: String, _ reads: [ReadFile]) -> ReadFile? {
        var out = stat()
        let exists = stat(output, &out) == 0
        var linkInfo = stat()
        let isLink = lstat(output, &linkInfo) == 0 && (linkInfo.st_mode & S_IFMT) == S_IFLNK
        let resolved = URL(fileURLWithPath: output).resolvingSymlinksInPath().standardizedFileURL.path
        for r in reads {
            var s = stat()
            if exists, stat(r.path, &s) == 0, s.st_dev == out.st_dev, s.st_ino == out.st_ino { return r }
            if URL(fileURLWithPath: r.path).resolvingSymlinksInPath().standardizedFileURL.path == resolved { return r }
            // A dangling link whose target is one of the inputs' names.
            if isLink, !exists, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: output),
                URL(fileURLWithPath: target, relativeTo: URL(fileURLWithPath: output).deletingLastPathComponent()).standardizedFileURL.path
                    == URL(fileURLWithPath: r.path).standardizedFileURL.path
            {
                return r
            }
        }
        return nil
    }

    static func firstBytes(_ path: String, _ n: Int) -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        return [UInt8]((try? handle.read(upToCount: n)) ?? Data())
    }

    /// What a file's first bytes say it is, for messages.
    static func describe(_ head: [UInt8]) -> String {
        if OutputKind.cnx.matches(head) { return "a .cnx model" }
        if OutputKind.npy.matches(head) { return "a .npy array" }
        if OutputKind.npz.matches(head) { return "a zip archive (.npz or a PyTorch checkpoint)" }
        if head.count >= 9, SafetensorsReader.looksLikeSafetensors(head, fileSize: Int.max) { return "safetensors weights" }
        // ONNX's ModelProto starts with ir_version (field 1, varint): byte 0x08.
        if head.first == 0x08 { return "what looks like an ONNX model" }
        if OutputKind.json.matches(head) { return "JSON" }
        if head.allSatisfy({ $0 == 9 || $0 == 10 || $0 == 13 || (32..<127).contains($0) || $0 >= 0x80 }) { return "text" }
        return "data of another kind"
    }
}
