import CNXGraph
import CNXIO
import Foundation

/// Samples to validate on: a preprocessed `.npy` batch, or images (a flat folder, a folder of
/// class sub-folders, or one file), with integer labels when they are known.
public final class Dataset: @unchecked Sendable {
    public enum Source {
        /// A float32 [N, 3, H, W] tensor.
        case tensor(Tensor)
        /// Image files, transformed on the fly.
        case images([String], Preprocessing)
    }

    public let source: Source
    /// One class id per sample, when known.
    public private(set) var labels: [Int]?
    /// Class names by id, for a folder of class sub-folders (torchvision's ImageFolder order).
    public let classNames: [String]?
    /// Where the samples came from and where the labels came from, for reports.
    public let path: String
    public private(set) var labelSource: String?
    /// Threads used to decode and transform images.
    public var threads: Int = 1

    init(source: Source, labels: [Int]?, classNames: [String]?, path: String, labelSource: String?) {
        self.source = source
        self.labels = labels
        self.classNames = classNames
        self.path = path
        self.labelSource = labelSource
    }

    public var count: Int {
        switch source {
        case .tensor(let t): return t.shape[0]
        case .images(let files, _): return files.count
        }
    }

    /// Shape of one sample: [3, H, W].
    public var sampleShape: [Int] {
        switch source {
        case .tensor(let t): return Array(t.shape.dropFirst())
        case .images(_, let p): return [3, p.height, p.width]
        }
    }

    /// The image files, for an image dataset.
    public var files: [String]? {
        if case .images(let f, _) = source { return f }
        return nil
    }

    /// A `.npy` batch: float32, N x 3 x H x W.
    public static func npy(_ path: String) throws -> Dataset {
        let t = try NPY.read(path: path)
        guard t.dtype == .float32 else { throw CNXError("\(path): the data must be float32, got \(t.dtype.name)") }
        guard t.shape.count == 4, t.shape[1] == 3 else {
            throw CNXError("\(path): the data must have shape N x 3 x H x W, got \(t.shape)")
        }
        guard t.shape[0] > 0 else { throw CNXError("\(path): the data holds no samples") }
        return Dataset(source: .tensor(t), labels: nil, classNames: nil, path: path, labelSource: nil)
    }

    /// Images: a file, a folder of images (sorted by name, no labels), or a folder of class
    /// sub-folders (labels as torchvision's ImageFolder gives them: classes sorted by name, files
    /// in sorted path order, found at any depth below their class folder).
    public static func images(_ path: String, preprocessing: Preprocessing) throws -> Dataset {
        try preprocessing.validate()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CNXError("\(path): no such file or folder")
        }
        guard isDirectory.boolValue else {
            return Dataset(source: .images([path], preprocessing), labels: nil, classNames: nil, path: path, labelSource: nil)
        }
        let entries = try listing(path)
        let classes = entries.filter { isFolder(join(path, $0)) }
        let classFiles = try classes.map { try imagesBelow(join(path, $0)) }
        if classFiles.contains(where: { !$0.isEmpty }) {
            if let empty = zip(classes, classFiles).first(where: { $0.1.isEmpty })?.0 {
                throw CNXError(
                    "\(join(path, empty)): a class folder with no image files (extensions \(ImageDecoder.extensions.sorted().joined(separator: ", ")))"
                )
            }
            var files: [String] = [], labels: [Int] = []
            for (i, list) in classFiles.enumerated() {
                files += list
                labels += Array(repeating: i, count: list.count)
            }
            return Dataset(
                source: .images(files, preprocessing), labels: labels, classNames: classes, path: path,
                labelSource: "class folders")
        }
        let files = entries.map { join(path, $0) }.filter { !isFolder($0) && isImageName($0) }
        guard !files.isEmpty else {
            throw CNXError("\(path): no image files (extensions \(ImageDecoder.extensions.sorted().joined(separator: ", ")))")
        }
        return Dataset(source: .images(files, preprocessing), labels: nil, classNames: nil, path: path, labelSource: nil)
    }

    /// Given image files, in the order given, without labels.
    public static func files(_ paths: [String], preprocessing: Preprocessing) throws -> Dataset {
        try preprocessing.validate()
        guard !paths.isEmpty else { throw CNXError("no image files given") }
        return Dataset(
            source: .images(paths, preprocessing), labels: nil, classNames: nil, path: paths.joined(separator: ", "), labelSource: nil)
    }

    /// A `.npy` file or images, chosen by what `path` is.
    public static func open(_ path: String, preprocessing: Preprocessing) throws -> Dataset {
        if path.lowercased().hasSuffix(".npy") { return try npy(path) }
        return try images(path, preprocessing: preprocessing)
    }

    /// Sets the labels from a `.npy` of integer class ids (int64 or int32), one per sample in
    /// the order of the data; they replace labels from class folders.
    public func loadLabels(_ path: String) throws {
        let t = try NPY.read(path: path)
        guard t.dtype == .int64 else { throw CNXError("\(path): labels must be integers (int64 or int32), got \(t.dtype.name)") }
        guard t.shape.count == 1 || (t.shape.count == 2 && t.shape[1] == 1) else {
            throw CNXError("\(path): labels must be a vector, got shape \(t.shape)")
        }
        guard t.count == count else {
            throw CNXError("\(path): \(t.count) labels for \(count) samples in \(self.path)")
        }
        let values = t.int64s
        if let i = values.firstIndex(where: { $0 < 0 || $0 > Int64(Int32.max) }) {
            throw CNXError("\(path): label \(values[i]) at index \(i) is not a class id")
        }
        labels = values.map { Int($0) }
        labelSource = path
    }

    /// Samples `range` as one float32 batch [n, 3, H, W]. A `.npy` batch is sliced without a copy;
    /// images are decoded and transformed on `threads` threads.
    public func batch(_ range: Range<Int>) throws -> Tensor {
        switch source {
        case .tensor(let t):
            let per = t.count / t.shape[0]
            let offset = range.lowerBound * per * 4
            let storage = Storage(slicing: t.storage, offset: offset, byteCount: range.count * per * 4)
            return Tensor(dtype: .float32, shape: [range.count] + Array(t.shape.dropFirst()), storage: storage)
        case .images(let files, let p):
            let out = Tensor(zeros: .float32, shape: [range.count, 3, p.height, p.width])
            let per = 3 * p.height * p.width
            let errors = ErrorSlot()
            out.withUnsafeMutableFloats { buffer in
                let base = buffer.baseAddress!
                DispatchQueue.concurrentPerform(iterations: max(1, min(threads, range.count))) { worker in
                    var i = worker
                    while i < range.count, errors.first == nil {
                        let file = files[range.lowerBound + i]
                        do {
                            let image = try ImageDecoder.decode(path: file)
                            p.normalise(try p.resizeAndCrop(image), into: base + i * per)
                        } catch let e as CNXError {
                            errors.set(e.inFile(file))
                        } catch {
                            errors.set(error)
                        }
                        i += max(1, min(threads, range.count))
                    }
                }
            }
            if let e = errors.first { throw e }
            return out
        }
    }

    // MARK: - Folder listing

    static func join(_ a: String, _ b: String) -> String { a.hasSuffix("/") ? a + b : a + "/" + b }

    static func isFolder(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }

    static func isImageName(_ path: String) -> Bool {
        ImageDecoder.extensions.contains((path as NSString).pathExtension.lowercased())
    }

    /// Entry names, sorted as Python sorts strings (by code point), hidden files included as
    /// `os.scandir` includes them.
    static func listing(_ path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted(by: codePointOrder)
        } catch {
            throw CNXError("\(path): cannot list (\(error.localizedDescription))")
        }
    }

    static func codePointOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Image files at any depth below `folder`, in the order of torchvision's
    /// `sorted(os.walk(folder))` then `sorted(fnames)`: by directory path, then by name.
    static func imagesBelow(_ folder: String) throws -> [String] {
        var found: [(directory: String, name: String)] = []
        var pending = [folder]
        while let dir = pending.popLast() {
            for name in try listing(dir) {
                let full = join(dir, name)
                if isFolder(full) { pending.append(full) } else if isImageName(name) { found.append((dir, name)) }
            }
        }
        found.sort { $0.directory != $1.directory ? codePointOrder($0.directory, $1.directory) : codePointOrder($0.name, $1.name) }
        return found.map { join($0.directory, $0.name) }
    }
}

/// The first error thrown by any of several threads.
final class ErrorSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?

    var first: Error? {
        lock.lock()
        defer { lock.unlock() }
        return error
    }

    func set(_ e: Error) {
        lock.lock()
        if error == nil { error = e }
        lock.unlock()
    }
}
