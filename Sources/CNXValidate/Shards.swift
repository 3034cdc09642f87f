import CNXFormat
import CNXGraph
import Foundation

/// One of N deterministic slices of a dataset, in whole batches: of the b = ceil(n / batch)
/// batches of the n samples in the data's stable order (sorted paths for a folder, rows for a
/// `.npy` batch), shard K (counted from 0) holds batches [floor(K b / N), floor((K + 1) b / N)).
/// So every sample is predicted in the same batch as in an unsharded run, and the figures do not
/// depend on the sharding even where a runtime's arithmetic depends on the batch.
public struct Shard: Equatable, Sendable {
    public let index: Int
    public let count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1 else { throw CNXError("--shard: the shard count must be at least 1, not \(count)") }
        guard (0..<count).contains(index) else {
            throw CNXError("--shard: shard \(index) is not one of 0..\(count - 1) (shards count from 0)")
        }
        self.index = index
        self.count = count
    }

    /// The samples of this shard among `total`, validated `batch` at a time.
    public func range(of total: Int, batch: Int) -> Range<Int> {
        let batches = (total + batch - 1) / batch
        let first = batches * index / count, end = batches * (index + 1) / count
        return min(first * batch, total)..<min(end * batch, total)
    }

    public var description: String { "\(index)/\(count)" }

    /// `K/N`, or `auto`: from the scheduler's environment.
    ///
    /// - Slurm job arrays: `SLURM_ARRAY_TASK_ID`, with `SLURM_ARRAY_TASK_COUNT` (or
    ///   `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_MAX`) and `SLURM_ARRAY_TASK_STEP`: task IDs
    ///   min, min + step, ... are shards 0, 1, ...
    /// - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX`, with the count from `shards` (the
    ///   Job's `completions`; Kubernetes does not put it in the environment).
    ///
    /// `shards`, when given, must agree with what the environment says.
    public static func parse(_ text: String, shards: Int?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> Shard
    {
        if text != "auto" {
            let fields = text.split(separator: "/", omittingEmptySubsequences: false)
            guard fields.count == 2, let k = Int(fields[0]), let n = Int(fields[1]) else {
                throw CNXError("--shard takes K/N (shard K of N, counted from 0, e.g. 0/4) or auto, not '\(text)'")
            }
            if let shards, shards != n { throw CNXError("--shard \(text) says \(n) shards but --shards says \(shards)") }
            return try Shard(index: k, count: n)
        }
        func int(_ name: String) throws -> Int? {
            guard let v = environment[name] else { return nil }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else {
                throw CNXError("--shard auto: \(name)='\(v)' is not a whole number")
            }
            return i
        }
        if let id = try int("SLURM_ARRAY_TASK_ID") {
            let step = try int("SLURM_ARRAY_TASK_STEP") ?? 1
            guard step >= 1 else { throw CNXError("--shard auto: SLURM_ARRAY_TASK_STEP=\(step) must be at least 1") }
            let min = try int("SLURM_ARRAY_TASK_MIN") ?? 0
            var count = try int("SLURM_ARRAY_TASK_COUNT")
            if count == nil, let max = try int("SLURM_ARRAY_TASK_MAX") { count = (max - min) / step + 1 }
            guard let n = count ?? shards else {
                throw CNXError(
                    "--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX (nor --shards) gives the number of shards"
                )
            }
            if let shards, shards != n { throw CNXError("--shard auto: the Slurm array has \(n) tasks but --shards says \(shards)") }
            guard (id - min) % step == 0 else {
                throw CNXError("--shard auto: SLURM_ARRAY_TASK_ID=\(id) is not min \(min) plus a multiple of step \(step)")
            }
            return try Shard(index: (id - min) / step, count: n)
        }
        if let index = try int("JOB_COMPLETION_INDEX") {
            guard let n = shards else {
                throw CNXError("--shard auto: JOB_COMPLETION_INDEX is set; give the Job's completions count as --shards N")
            }
            return try Shard(index: index, count: n)
        }
        throw CNXError(
            "--shard auto: no scheduler shard in the environment (SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX); give --shard K/N")
    }
}

/// What one shard of a validation found, with the sums behind every figure (not the figures),
/// and what it was run on, so that `validate merge` can check the parts belong together and
/// give exactly the numbers of one unsharded run.
public struct ValidationPart {
    public static let format = "convnext-convert validation part"
    public static let version = 1

    public var shard: Shard
    /// The shard's samples, and how many the whole data has.
    public var range: Range<Int>
    public var total: Int
    /// Samples per prediction: the shards' batches are those of the unsharded run.
    public var batch: Int
    /// What must be the same in every part of one validation: the model's and the reference's
    /// content, the data, the labels and the preprocessing.
    public var identity: [(String, String)]
    public var result: ValidationResult

    public init(shard: Shard, range: Range<Int>, total: Int, batch: Int, identity: [(String, String)], result: ValidationResult) {
        self.shard = shard
        self.range = range
        self.total = total
        self.batch = batch
        self.identity = identity
        self.result = result
    }

    // MARK: - Identity

    /// The identity of a validation: SHA-256 of the model and reference files (or of the saved
    /// reference logits), a fingerprint of the data (the image paths below the data folder and
    /// their sizes, or the `.npy` file's size, header and first MiB), of the labels, and the
    /// preprocessing.
    /// `referenceLogits`: the name given to `--reference-logits` (each shard may read its own
    /// file), which stands for the reference instead of a file's content.
    public static func identity(modelFile: String, referenceFile: String?, referenceLogits: String?, data: Dataset) throws -> [(
        String, String
    )] {
        var out: [(String, String)] = [("model_sha256", try SHA256.hex(path: modelFile))]
        if let referenceFile { out.append(("reference_sha256", try SHA256.hex(path: referenceFile))) }
        if let referenceLogits { out.append(("reference_logits", referenceLogits)) }
        out += [
            ("samples", String(data.count))
        ]
        var hasher = SHA256.Hasher()
        func feed(_ s: String) { Array(s.utf8).withUnsafeBytes { hasher.update($0) } }
        switch data.source {
        case .tensor(let t):
            feed("npy \(t.shape)\n")
            t.storage.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(1 << 20))) }
        case .images(let files, let p):
            let root = data.path.hasSuffix("/") ? data.path : data.path + "/"
            for f in files {
                let size = (try? FileManager.default.attributesOfItem(atPath: f)[.size] as? Int) ?? -1
                feed("\(f.hasPrefix(root) ? String(f.dropFirst(root.count)) : (f as NSString).lastPathComponent) \(size)\n")
            }
            out.append(("preprocessing", p.summary))
        }
        out.append(("data_fingerprint", hasher.finalize()))
        if let labels = data.labels {
            var h = SHA256.Hasher()
            Array(labels.map(String.init).joined(separator: ",").utf8).withUnsafeBytes { h.update($0) }
            out.append(("labels_sha256", h.finalize()))
        }
        return out
    }

    // MARK: - JSON

    /// The part as JSON. Every sum is exact (ExactSum's text) and every float is written as its
    /// bit pattern, so nothing is lost on the way to `merge`.
    public func json() -> String {
        let r = result
        var o: [(String, JSON)] = [
            ("format", .string(Self.format)), ("version", .int(Self.version)),
            ("shard", .int(shard.index)), ("shards", .int(shard.count)),
            ("first_sample", .int(range.lowerBound)), ("end_sample", .int(range.upperBound)), ("total_samples", .int(total)),
            ("batch", .int(batch)),
            ("identity", .object(identity.map { ($0.0, .string($0.1)) })),
            (
                "model",
                .object([("path", .string(r.modelPath)), ("runtime", .string(r.modelRuntime)), ("seconds", .string(bits(r.modelSeconds)))])
            ),
            (
                "reference",
                .object([
                    ("path", .string(r.referencePath)), ("runtime", .string(r.referenceRuntime)),
                    ("seconds", .string(bits(r.referenceSeconds))),
                ])
            ),
            (
                "data",
                .object([
                    ("path", .string(r.dataPath)), ("sample_shape", .array(r.sampleShape.map { .int($0) })),
                    ("label_source", r.labelSource.map { .string($0) } ?? .null),
                    ("class_names", r.classNames.map { .array($0.map { .string($0) }) } ?? .null),
                ])
            ),
        ]
        if let p = r.preprocessing {
            o.append(
                (
                    "preprocessing",
                    .object([
                        ("height", .int(p.height)), ("width", .int(p.width)), ("crop_pct", .string(bits(p.cropPct))),
                        ("interpolation", .string(p.interpolation.rawValue)),
                        ("mean", .array(p.mean.map { .string(bits($0)) })), ("std", .array(p.std.map { .string(bits($0)) })),
                        ("summary", .string(p.summary)),
                    ])
                ))
        }
        if let sources = r.preprocessingSources {
            o.append(("preprocessing_sources", .object(sources.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        if let outputs = r.outputs {
            o.append(
                (
                    "outputs",
                    .array(
                        outputs.map { out in
                            .object([
                                ("name", .string(out.name)), ("shape", .array(out.shape.map { .int($0) })), ("samples", .int(out.samples)),
                                ("cosine", .string(out.cosineTotal.text)), ("signal", .string(out.signalTotal.text)),
                                ("noise", .string(out.noiseTotal.text)), ("max_abs_diff", .string(bits(out.maxAbsDiff))),
                            ])
                        })
                ))
        } else {
            let m = r.metrics
            o.append(
                (
                    "metrics",
                    .object([
                        ("samples", .int(m.samples)), ("classes", .int(m.classes)), ("top1_agreements", .int(m.top1Agreements)),
                        ("top5_overlap_count", .int(m.top5OverlapCount)), ("cosine", .string(m.cosineTotal.text)),
                        ("signal", .string(m.signalTotal.text)), ("noise", .string(m.noiseTotal.text)),
                        ("max_abs_diff", .string(bits(m.maxAbsDiff))), ("labelled", .int(m.labelled)),
                        ("model_top1", .int(m.modelTop1)), ("reference_top1", .int(m.referenceTop1)),
                        ("model_top5", .int(m.modelTop5)), ("reference_top5", .int(m.referenceTop5)),
                        (
                            "per_class",
                            .array(
                                m.perClass.sorted { $0.key < $1.key }.map { id, e in
                                    .array([.int(id), .int(e.samples), .int(e.model), .int(e.reference)])
                                })
                        ),
                    ])
                ))
        }
        if let layers = r.perLayer {
            o.append(
                (
                    "per_layer",
                    .array(
                        layers.map { l in
                            .object([
                                ("name", .string(l.name)), ("shape", .array(l.shape.map { .int($0) })),
                                ("sqnr_db", .string(bits(l.sqnrDB))),
                                ("local_sqnr_db", l.localSQNRDB.map { .string(bits($0)) } ?? .null),
                                ("max_abs_diff", .string(bits(l.maxAbsDiff))), ("cosine", .string(bits(l.cosine))),
                            ])
                        })
                ))
        }
        return JSON.object(o).text + "\n"
    }

    /// Reads a part written by `json()`.
    public static func read(path: String) throws -> ValidationPart {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CNXError("\(path): cannot read (\(FileManager.default.fileExists(atPath: path) ? "unreadable" : "no such file"))")
        }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CNXError("\(path): not a validation part (not a JSON object)")
        }
        guard o["format"] as? String == format else {
            throw CNXError("\(path): not a validation part (written by validate --shard ... --part)")
        }
        let reader = PartReader(path: path)
        guard try reader.int(o, "version") == version else {
            throw CNXError("\(path): validation part version \(o["version"] ?? "?") is not \(version)")
        }
        let shard = try Shard(index: try reader.int(o, "shard"), count: try reader.int(o, "shards"))
        let first = try reader.int(o, "first_sample"), end = try reader.int(o, "end_sample"), total = try reader.int(o, "total_samples")
        let batch = try reader.int(o, "batch")
        guard batch >= 1, total >= 0, 0 <= first, first <= end, end <= total, shard.range(of: total, batch: batch) == first..<end else {
            throw CNXError("\(path): samples \(first)..<\(end) are not shard \(shard.description) of \(total) in batches of \(batch)")
        }
        let identityObject = try reader.object(o, "identity")
        let identity = identityObject.keys.sorted().map { ($0, "\(identityObject[$0]!)") }
        let model = try reader.object(o, "model"), reference = try reader.object(o, "reference"), dataInfo = try reader.object(o, "data")
        var preprocessing: Preprocessing?
        if let p = o["preprocessing"] as? [String: Any] {
            guard let interpolation = Interpolation(rawValue: try reader.string(p, "interpolation")) else {
                throw CNXError("\(path): unknown interpolation in preprocessing")
            }
            preprocessing = Preprocessing(
                height: try reader.int(p, "height"), width: try reader.int(p, "width"),
                cropPct: try reader.double(p, "crop_pct"), interpolation: interpolation,
                mean: try reader.floats(p, "mean"), std: try reader.floats(p, "std"))
        }
        var result = ValidationResult(
            modelPath: try reader.string(model, "path"), modelRuntime: try reader.string(model, "runtime"),
            referencePath: try reader.string(reference, "path"), referenceRuntime: try reader.string(reference, "runtime"),
            dataPath: try reader.string(dataInfo, "path"), sampleShape: try reader.ints(dataInfo, "sample_shape"),
            labelSource: dataInfo["label_source"] as? String, classNames: (dataInfo["class_names"] as? [Any])?.map { "\($0)" },
            preprocessing: preprocessing, metrics: MetricsAccumulator(),
            modelSeconds: try reader.double(model, "seconds"), referenceSeconds: try reader.double(reference, "seconds"), perLayer: nil)
        if let sources = o["preprocessing_sources"] as? [String: Any] {
            result.preprocessingSources = sources.mapValues { "\($0)" }
        }
        if let outputs = o["outputs"] as? [Any] {
            result.outputs = try outputs.map { item in
                guard let d = item as? [String: Any] else { throw CNXError("\(path): an output entry is not an object") }
                return OutputMetrics(
                    name: try reader.string(d, "name"), shape: try reader.ints(d, "shape"), samples: try reader.int(d, "samples"),
                    cosine: try reader.sum(d, "cosine"), signal: try reader.sum(d, "signal"), noise: try reader.sum(d, "noise"),
                    maxAbsDiff: try reader.float(d, "max_abs_diff"))
            }
        } else {
            let m = try reader.object(o, "metrics")
            var perClass: [Int: (samples: Int, model: Int, reference: Int)] = [:]
            for row in (m["per_class"] as? [Any]) ?? [] {
                guard let v = row as? [Any], v.count == 4, let id = (v[0] as? NSNumber)?.intValue, let s = (v[1] as? NSNumber)?.intValue,
                    let a = (v[2] as? NSNumber)?.intValue, let b = (v[3] as? NSNumber)?.intValue
                else {
                    throw CNXError("\(path): a per_class row is not [class, samples, model, reference]")
                }
                perClass[id] = (s, a, b)
            }
            result.metrics = MetricsAccumulator(
                samples: try reader.int(m, "samples"), classes: try reader.int(m, "classes"),
                top1Agreements: try reader.int(m, "top1_agreements"),
                top5OverlapCount: try reader.int(m, "top5_overlap_count"), cosine: try reader.sum(m, "cosine"),
                signal: try reader.sum(m, "signal"), noise: try reader.sum(m, "noise"), maxAbsDiff: try reader.float(m, "max_abs_diff"),
                labelled: try reader.int(m, "labelled"), modelTop1: try reader.int(m, "model_top1"),
                referenceTop1: try reader.int(m, "reference_top1"),
                modelTop5: try reader.int(m, "model_top5"), referenceTop5: try reader.int(m, "reference_top5"), perClass: perClass)
            guard result.metrics.samples == end - first else {
                throw CNXError("\(path): \(result.metrics.samples) samples counted for a shard of \(end - first)")
            }
        }
        if let layers = o["per_layer"] as? [Any] {
            result.perLayer = try layers.map { item in
                guard let d = item as? [String: Any] else { throw CNXError("\(path): a per_layer entry is not an object") }
                return LayerComparison(
                    name: try reader.string(d, "name"), shape: try reader.ints(d, "shape"), sqnrDB: try reader.double(d, "sqnr_db"),
                    localSQNRDB: d["local_sqnr_db"] is String ? try reader.double(d, "local_sqnr_db") : nil,
                    maxAbsDiff: try reader.float(d, "max_abs_diff"), cosine: try reader.double(d, "cosine"))
            }
        }
        return ValidationPart(shard: shard, range: first..<end, total: total, batch: batch, identity: identity, result: result)
    }

    // MARK: - Merge

    /// The validation the parts make together: the same figures, bit for bit, as one unsharded
    /// run (timings are the sums of the parts'). Refuses parts of different validations (model,
    /// reference, data, labels, preprocessing or shard counts), and names missing or duplicated
    /// shards.
    public static func merge(_ parts: [(path: String, part: ValidationPart)]) throws -> ValidationResult {
        guard let (firstPath, first) = parts.first else { throw CNXError("validate merge: no parts given") }
        var seen: [Int: String] = [:]
        for (path, p) in parts {
            guard p.shard.count == first.shard.count else {
                throw CNXError(
                    "\(path): shard \(p.shard.description) is of \(p.shard.count) shards, but \(firstPath) is of \(first.shard.count)")
            }
            guard p.batch == first.batch else {
                throw CNXError(
                    "\(path): validated in batches of \(p.batch), but \(firstPath) in batches of \(first.batch): give every shard the same --batch"
                )
            }
            guard p.total == first.total else {
                throw CNXError("\(path): the data has \(p.total) samples, but \(firstPath)'s has \(first.total): parts of different data")
            }
            let mine = Dictionary(p.identity, uniquingKeysWith: { a, _ in a }),
                theirs = Dictionary(first.identity, uniquingKeysWith: { a, _ in a })
            for key in Set(mine.keys).union(theirs.keys).sorted() where mine[key] != theirs[key] {
                let what =
                    [
                        "model_sha256": "model", "reference_sha256": "reference", "reference_logits": "reference",
                        "data_fingerprint": "data", "labels_sha256": "labels",
                        "preprocessing": "preprocessing", "samples": "data",
                    ][key] ?? key
                throw CNXError(
                    "\(path): a part of another validation than \(firstPath): the \(what) differs (\(key): \(mine[key] ?? "none") vs \(theirs[key] ?? "none"))"
                )
            }
            if let other = seen[p.shard.index] {
                throw CNXError("validate merge: shard \(p.shard.description) is given twice (\(other) and \(path))")
            }
            seen[p.shard.index] = path
        }
        let missing = (0..<first.shard.count).filter { seen[$0] == nil }
        if !missing.isEmpty {
            throw CNXError(
                "validate merge: \(missing.count) of \(first.shard.count) shards missing: "
                    + missing.prefix(20).map { "\($0)/\(first.shard.count)" }.joined(separator: ", ") + (missing.count > 20 ? ", ..." : ""))
        }
        let ordered = parts.map(\.part).sorted { $0.shard.index < $1.shard.index }
        var result = ordered[0].result
        result.modelSeconds = 0
        result.referenceSeconds = 0
        result.perLayer = ordered.first { $0.result.perLayer != nil }?.result.perLayer
        for (i, p) in ordered.enumerated() {
            result.modelSeconds += p.result.modelSeconds
            result.referenceSeconds += p.result.referenceSeconds
            guard i > 0 else { continue }
            if let outputs = p.result.outputs {
                guard var merged = result.outputs, merged.map(\.name) == outputs.map(\.name) else {
                    throw CNXError("validate merge: shard \(p.shard.description) compares other outputs than shard 0")
                }
                for k in merged.indices { try merged[k].merge(outputs[k]) }
                result.outputs = merged
            } else {
                guard result.outputs == nil else {
                    throw CNXError("validate merge: shard \(p.shard.description) compares logits, shard 0 several outputs")
                }
                try result.metrics.merge(p.result.metrics)
            }
        }
        return result
    }
}

/// A float's or double's bit pattern, as text that reads back exactly.
func bits(_ v: Double) -> String { String(format: "0x%016llx", v.bitPattern) }
func bits(_ v: Float) -> String { String(format: "0x%08x", v.bitPattern) }

/// Typed fields of a part's JSON, with errors that name the file and the field.
struct PartReader {
    let path: String

    func value(_ o: [String: Any], _ key: String) throws -> Any {
        guard let v = o[key], !(v is NSNull) else { throw CNXError("\(path): validation part lacks '\(key)'") }
        return v
    }
    func int(_ o: [String: Any], _ key: String) throws -> Int {
        guard let n = try value(o, key) as? NSNumber else { throw CNXError("\(path): '\(key)' is not a number") }
        return n.intValue
    }
    func string(_ o: [String: Any], _ key: String) throws -> String {
        guard let s = try value(o, key) as? String else { throw CNXError("\(path): '\(key)' is not a string") }
        return s
    }
    func object(_ o: [String: Any], _ key: String) throws -> [String: Any] {
        guard let d = try value(o, key) as? [String: Any] else { throw CNXError("\(path): '\(key)' is not an object") }
        return d
    }
    func ints(_ o: [String: Any], _ key: String) throws -> [Int] {
        guard let a = try value(o, key) as? [Any] else { throw CNXError("\(path): '\(key)' is not a list") }
        return try a.map {
            guard let n = $0 as? NSNumber else { throw CNXError("\(path): '\(key)' holds a non-number") }; return n.intValue
        }
    }
    func double(_ o: [String: Any], _ key: String) throws -> Double {
        let s = try string(o, key)
        guard s.hasPrefix("0x"), let b = UInt64(s.dropFirst(2), radix: 16) else { throw CNXError("\(path): '\(key)' is not a bit pattern") }
        return Double(bitPattern: b)
    }
    func float(_ o: [String: Any], _ key: String) throws -> Float {
        let s = try string(o, key)
        guard s.hasPrefix("0x"), let b = UInt32(s.dropFirst(2), radix: 16) else { throw CNXError("\(path): '\(key)' is not a bit pattern") }
        return Float(bitPattern: b)
    }
    func floats(_ o: [String: Any], _ key: String) throws -> [Float] {
        guard let a = try value(o, key) as? [Any] else { throw CNXError("\(path): '\(key)' is not a list") }
        return try a.map { item in
            guard let s = item as? String, s.hasPrefix("0x"), let b = UInt32(s.dropFirst(2), radix: 16) else {
                throw CNXError("\(path): '\(key)' holds a value that is not a bit pattern")
            }
            return Float(bitPattern: b)
        }
    }
    func sum(_ o: [String: Any], _ key: String) throws -> ExactSum {
        guard let s = ExactSum(text: try string(o, key)) else { throw CNXError("\(path): '\(key)' is not an exact sum") }
        return s
    }
}
