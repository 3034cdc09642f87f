import CKernels
import CReferenceKernels
import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXReference
import CNXRuntime
import Foundation

/// The version written into every `.cnx` (`converter.version`).
public let converterVersion = "0.3.0"

/// Converts a model file to `.cnx`: read, optimise, check the optimised graph against the
/// original on a random input, write atomically.
public enum Converter {
    public struct Options {
        public var verify = true
        public var verbose = false
        public var dumpAfter: String?
        /// Stages whose outputs become the graph's outputs (backbone mode); nil keeps the head.
        public var features: [Int]?
        /// int8 quantization after optimisation: calibration samples (N x 3 x H x W) and settings.
        public var int8: (calibration: Tensor, options: Quantizer.Options)?
        /// bfloat16 or float16 weights after optimisation (HalfPrecisionLowering), with the
        /// layers to keep float32, named as inspect names them.
        public var halfPrecision: (dtype: DType, keepFloat: [String])?
        public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        /// Files the command reads besides the model (calibration and validation data, labels):
        /// the output may be none of them, nor the model or its external data.
        public var reads: [ReadFile] = []
        /// Write over an existing file that is not a `.cnx`, or to a name not ending in `.cnx`.
        public var force = false
        /// Metadata to record in the `.cnx` over what the source says (preprocessing and class
        /// names given on the command line).
        public var recorded: [String: MetadataValue] = [:]
        /// Told when each step starts (reading, reference run, passes, quantizing, writing,
        /// checking the written file), for a progress line.
        public var stage: ((String) -> Void)?
        /// For a checkpoint: the command line's say on what its weights do not carry.
        public var checkpoint = CheckpointOptions()
        /// An ONNX export of the same model: the graph read from the input is run against it on
        /// a random input, and the conversion refused when they differ beyond `tolerance` relative.
        public var referenceONNX: String?
        public init() {}
    }

    public struct Report {
        public var architecture: Architecture?
        public var steps: [Pipeline.Step]
        public var nodesBefore: Int
        public var nodesAfter: Int
        public var outputBytes: Int
        public var seconds: Double
        /// Relative error of the optimised graph against the original, when checked.
        public var verificationError: Float?
        /// With int8: the output SQNR of the quantized model against the float32 one on the
        /// calibration samples, and the layers kept in float32.
        public var int8SQNR: Double?
        public var keptFloat: [String] = []
        public var quantizeSeconds: Double?
        /// With bfloat16 / float16 weights: the output SQNR against the float32 graph on the
        /// verification's random input (nil with --no-verify).
        public var halfSQNR: Double?
        public var sensitivity: [Quantizer.Sensitivity] = []
        public var accuracy: Quantizer.AccuracyCheck?
        /// What was written: the graph's outputs (name and shape), the stages kept for a
        /// backbone (nil for a classifier), the class count (nil for a backbone), the passes that
        /// changed the graph, in order, and what the verification compared.
        public var outputs: [ValueInfo] = []
        public var features: [Int]?
        public var classes: Int?
        public var passes: [String] = []
        public var verifiedAgainst: String?
        public var metadata: [String: MetadataValue] = [:]
        /// For a checkpoint: the values its weights do not carry, as used, with their sources.
        public var assumptions: [Assumption] = []
        /// With `referenceONNX`: the relative error of the input's graph against the export's.
        public var referenceError: Float?
    }

    public static func convert(input: String, output: String, options: Options = Options()) throws -> Report {
        let start = Date()
        // The checks below run tiny GEMMs on the reference kernels: one BLAS thread is faster
        // there, and leaves the other core to hashing.
        let blasThreads = cnx_blas_threads(1)
        defer { _ = cnx_blas_threads(blasThreads) }
        // The source's SHA-256 (for the metadata) is computed on another core meanwhile.
        let digest = BackgroundResult { try SHA256.hex(path: ModelLoader.sourceFile(input)) }

        options.stage?("reading \(input)")
        // The loaded model is taken apart at once: its graph moves into `graph`, so that no second
        // reference keeps the original weights (mapped pages or converted copies) alive while the
        // passes replace them. Peak memory stays near one copy of the model.
        var graph: Graph
        let (source, referenceError): (LoadedModel, Float?)
        do {
            var loaded = try load(input, options: options)
            graph = loaded.model.graph
            loaded.model.graph = Graph(inputs: [], outputs: [], nodes: [], initializers: [:])
            (source, referenceError) = loaded
        }
        try OutputGuard.check(
            output: output, kind: .cnx,
            reads: OutputGuard.modelFiles(input, graphMetadata: graph.metadata) + options.reads, force: options.force)
        if let name = options.dumpAfter, !Pipeline.standard.passNames.contains(name) {
            throw CNXError(
                "--dump-after: no pass is called '\(name)'; passes: \(Pipeline.standard.passNames.joined(separator: ", "))")
        }
        var metadata = source.metadata
        let inputInfo = graph.inputs
        let nodesBefore = graph.nodes.count
        var architecture = Architecture.recognise(graph) ?? recorded(metadata, graph: graph)

        // The reader's graph's answer on a random input is taken first, so that the original
        // weights can be freed as the passes replace them.
        var probe: Probe?
        if options.verify, !graph.inputs.isEmpty {
            options.stage?("running the original on a random input")
            probe = try Probe(graph, features: options.features, input: input)
        }

        options.stage?("optimising")
        let steps = try optimise(&graph, input: input, options: options)
        // Every conversion checks the optimised graph against the reader's, on the reference
        // kernels: the check is about what the passes did.
        var error: Float?
        var verifiedAgainst = "the original on a random input"
        if let probe {
            error = try verify(graph, on: probe.input, expected: probe.outputs, input: input, what: "the optimised graph")
        }
        // What the written file is checked against: the reader's outputs, or for a backbone the
        // stage outputs.
        var expectedOfFile = probe?.outputs
        if let features = options.features {
            try selectOutputs(&graph, features: features, input: input)
            if let probe {
                if let stages = probe.stages {
                    error = max(
                        error ?? 0, try verify(graph, on: probe.input, expected: stages, input: input, what: "the backbone's stage outputs")
                    )
                    expectedOfFile = stages
                    verifiedAgainst = "the original's stage outputs on a random input"
                } else {
                    // The stage tensors of the original were not identified: the optimised graph
                    // was checked on the original's outputs above, and the written backbone is
                    // checked against the extracted graph on the reference kernels.
                    expectedOfFile = try run(graph, on: probe.input, input: input)
                    verifiedAgainst = "the original's outputs, and the stage outputs against the optimised graph, on a random input"
                }
            }
            architecture?.classes = nil
        }

        var quantized: Quantized?
        if let int8 = options.int8 {
            options.stage?("quantizing")
            var int8Options = int8.options
            // A mixed file: the stem and head in the half precision of the other float layers.
            if let half = options.halfPrecision { int8Options.endsPrecision = half.dtype }
            var q = try quantize(graph, calibration: int8.calibration, options: int8Options, input: input)
            for (k, v) in q.metadata where k != MetadataKey.quantizationFloatLayers || options.halfPrecision == nil { metadata[k] = v }
            if let half = options.halfPrecision {
                // A mixed file: every layer int8 leaves float32 gets half weights (the stem and
                // head already have them, from the quantizer).
                let layersKey = MetadataKey.quantizationHalfLayers(half.dtype)
                let ends = q.metadata[layersKey]?.stringsValue ?? []
                let lowered = try HalfPrecisionLowering.apply(&q.graph, to: half.dtype)
                q.keptFloat = lowered.keptFloat
                // The int8 pass's description and depthwise precision (its blocks' depthwise on bfloat16) stand.
                for (k, v) in lowered.metadata where k != MetadataKey.quantizationDescription && k != MetadataKey.quantizationDepthwise {
                    metadata[k] = v
                }
                metadata[layersKey] = .strings((ends + lowered.lowered).sorted())
                if case .string(let d)? = metadata[MetadataKey.quantizationDescription] {
                    metadata[MetadataKey.quantizationDescription] = .string(
                        d + (d.hasSuffix(".") ? " " : ". ") + "Mixed: the GEMM layers not int8 have \(half.dtype.name) weights.")
                }
            }
            graph = q.graph
            quantized = q
        }
        var halfSQNR: Double?
        var halfKeptFloat: [String] = []
        if let half = options.halfPrecision, options.int8 == nil {
            let float = graph
            let lowered: HalfPrecisionLowering.Result
            options.stage?("lowering weights to \(half.dtype.name)")
            do {
                lowered = try HalfPrecisionLowering.apply(&graph, to: half.dtype, keepFloat: Quantizer.keys(for: half.keepFloat, in: graph))
            } catch let e as CNXError {
                throw CNXError("\(input): \(e.message)")
            }
            if let probe {
                // How far the lowered graph is from float32, on the runtime that will run it.
                halfSQNR = OutputError.sqnr(try Model(graph: graph).predict(probe.input), try Model(graph: float).predict(probe.input))
            }
            halfKeptFloat = lowered.keptFloat
            for (k, v) in lowered.metadata { metadata[k] = v }
        }

        var passes = passNames(steps, features: options.features, int8: options.int8 != nil)
        if let half = options.halfPrecision { passes.append(HalfPrecisionLowering.passName(half.dtype)) }
        var described = try describe(
            source: input, format: source.format, architecture: architecture, inputs: inputInfo, steps: steps)
        // A .cnx converted again (to record metadata, say) keeps the passes that made it.
        let earlier = source.format == "cnx" ? metadata[MetadataKey.converterPasses]?.stringsValue ?? [] : []
        described[MetadataKey.converterPasses] = .strings(earlier + passes)
        described[MetadataKey.sourceSHA256] = .string(try digest.value())
        for (k, v) in described where metadata[k] == nil || k.hasPrefix("converter.") { metadata[k] = v }
        if let features = options.features {
            metadata[MetadataKey.classes] = nil
            metadata[MetadataKey.classNames] = nil
            metadata[MetadataKey.features] = .ints(features.map(Int64.init))
        }
        metadata[MetadataKey.outputs] = .strings(graph.outputs.map(\.name))
        try record(options.recorded, into: &metadata, graph: graph, input: input)
        let outputs = graph.outputs
        let nodesAfter = graph.nodes.count

        // The written file is checked on the runtime that will run it (an int8 or half file differs
        // from float32 by design: its float32 graph was checked above, before quantization).
        let fileCheck =
            options.int8 == nil && options.halfPrecision == nil ? probe.flatMap { p in expectedOfFile.map { (p.input, $0) } } : nil
        let model = CNXModel(graph: graph, metadata: metadata)
        graph = Graph(inputs: [], outputs: [], nodes: [], initializers: [:])
        // `write` owns the model from here and lets it go before it loads the written file.
        if let e = try write(consume model, to: output, checkingOn: fileCheck, input: input, stage: options.stage) {
            error = max(error ?? 0, e)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return Report(
            architecture: architecture, steps: steps, nodesBefore: nodesBefore, nodesAfter: nodesAfter,
            outputBytes: size, seconds: Date().timeIntervalSince(start), verificationError: error,
            int8SQNR: quantized?.sqnr, keptFloat: quantized?.keptFloat ?? halfKeptFloat, quantizeSeconds: quantized?.seconds,
            halfSQNR: halfSQNR,
            sensitivity: quantized?.sensitivity ?? [], accuracy: quantized?.accuracy, outputs: outputs,
            features: options.features, classes: options.features == nil ? architecture?.classes : nil, passes: passes,
            verifiedAgainst: error == nil ? nil : verifiedAgainst, metadata: metadata,
            assumptions: source.assumptions, referenceError: referenceError)
    }

    // MARK: - The steps

    /// Step 1, load: reads `input` with the reader its content calls for and, with
    /// `options.referenceONNX`, checks the graph read against that ONNX export.
    public static func load(_ input: String, options: Options) throws -> (model: LoadedModel, referenceError: Float?) {
        let model = try ModelLoader.load(input, options: options.checkpoint)
        var referenceError: Float?
        if let reference = options.referenceONNX {
            referenceError = try checkAgainstReference(model.graph, input: input, reference: reference, assumptions: model.assumptions)
        }
        return (model, referenceError)
    }

    /// Step 2, the probe the verification uses: the reader's graph run on the reference kernels
    /// on a random input, before the passes change it. With `features`, also the tensors it
    /// computes at the end of those stages (each stage's last block output, found by meaning),
    /// when the graph is laid out so.
    public struct Probe {
        public var input: Tensor
        /// The graph's outputs, in order.
        public var outputs: [Tensor]
        /// The chosen stages' outputs, in order; nil without features or when not identified.
        public var stages: [Tensor]?

        public init(_ graph: Graph, features: [Int]?, input path: String) throws {
            guard let first = graph.inputs.first else { throw CNXError("\(path): the graph has no input") }
            input = randomTensor(sampleShape(first))
            var g = graph
            let stageValues = features.flatMap { stageOutputs(graph, stages: $0) }
            if let stageValues { g.outputs += stageValues.map { ValueInfo(name: $0, dtype: .float32, shape: nil) } }
            let out = try ReferenceExecutor(graph: g).run([first.name: input])
            outputs = try Converter.values(graph.outputs.map(\.name), in: out, input: path)
            stages = try stageValues.map { try Converter.values($0, in: out, input: path) }
        }
    }

    /// Step 3, optimise: the standard pipeline, with `--dump-after` and `--verbose` logged.
    public static func optimise(_ graph: inout Graph, input: String, options: Options) throws -> [Pipeline.Step] {
        let steps: [Pipeline.Step]
        do {
            steps = try Pipeline.standard.run(&graph) { name, g in
                if name == options.dumpAfter { options.log("--- graph after \(name) ---\n\(g.dump())") }
            }
        } catch let e as CNXError {
            throw CNXError("\(input): \(e.message)")
        }
        if options.verbose {
            for s in steps {
                options.log(
                    String(
                        format: "  %-22@ %4d rewrites, %4d nodes after, %.1f ms", s.pass as NSString, s.rewrites, s.nodesAfter,
                        s.seconds * 1000))
            }
        }
        return steps
    }

    /// The verification: runs `graph` on the reference kernels on `x` and returns its worst
    /// relative error against `expected` (the reader's graph's answer); refuses beyond
    /// `tolerance`, saying what differs (`what`).
    public static func verify(_ graph: Graph, on x: Tensor, expected: [Tensor], input: String, what: String) throws -> Float {
        guard let name = graph.inputs.first?.name else { throw CNXError("\(input): the graph has no input") }
        let e = try worstError(graph.outputs, try ReferenceExecutor(graph: graph).run([name: x]), expected)
        try refuse(e, input: input, what: what)
        return e
    }

    /// Step 4, select outputs: a backbone's outputs become the chosen stages' feature maps.
    public static func selectOutputs(_ graph: inout Graph, features: [Int], input: String) throws {
        do { try ExtractFeatures.apply(&graph, stages: features) } catch let e as CNXError { throw CNXError("\(input): \(e.message)") }
    }

    /// What the quantize step gives: the int8 graph, what it records, and how far it is from
    /// float32.
    public struct Quantized {
        public var graph: Graph
        public var metadata: [String: MetadataValue]
        /// Output SQNR (dB) of the int8 graph against the float32 one on a few calibration samples.
        public var sqnr: Double
        public var keptFloat: [String]
        public var sensitivity: [Quantizer.Sensitivity]
        public var accuracy: Quantizer.AccuracyCheck?
        public var seconds: Double
    }

    /// Step 5, quantize: int8 from calibration statistics; refuses a model already quantized.
    public static func quantize(_ graph: Graph, calibration: Tensor, options: Quantizer.Options, input: String) throws -> Quantized {
        guard !graph.initializers.values.contains(where: { $0.dtype == .int8 }) else {
            throw CNXError("\(input): the model is already quantized")
        }
        let t0 = Date()
        let q: Quantizer.Result
        do { q = try Quantizer.quantize(graph, calibration: calibration, options: options) } catch let e as CNXError {
            throw CNXError("\(input): \(e.message)")
        }
        let seconds = Date().timeIntervalSince(t0)
        // How far int8 is from float32, on a few calibration samples.
        let probe = Quantizer.firstSamples(calibration, count: min(4, calibration.shape[0]), graph: graph)
        let f = try Model(graph: graph, threads: options.threads).predict(probe)
        let y = try Model(graph: q.graph, threads: options.threads).predict(probe)
        return Quantized(
            graph: q.graph, metadata: q.metadata, sqnr: OutputError.sqnr(y, f), keptFloat: q.keptFloat,
            sensitivity: q.sensitivity, accuracy: q.accuracy, seconds: seconds)
    }

    /// Step 6, write. With `check` (a probe input and the outputs expected of it), the file is
    /// written beside `output`, run on the runtime that will run it, and put in place only when
    /// within `tolerance`: what is checked is what ships; the error is returned. Without, it is
    /// written in place (atomically). The model is consumed: it is released once written, before
    /// the check loads the file, so that the in-memory weights and the runtime's packed copy of
    /// the written ones are never held together (a conversion's peak stays near one model).
    public static func write(
        _ model: consuming CNXModel, to output: String, checkingOn check: (input: Tensor, expected: [Tensor])?,
        input: String, stage: ((String) -> Void)? = nil
    ) throws -> Float? {
        guard let check else {
            stage?("writing")
            try CNXWriter.write(model, to: output)
            return nil
        }
        let url = URL(fileURLWithPath: output)
        let staging = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).checking").path
        let registration = InterruptCleanup.register(staging)
        defer { InterruptCleanup.unregister(registration) }
        stage?("writing")
        try CNXWriter.write(model, to: staging)
        _ = consume model
        stage?("checking the written file against the original")
        do {
            let written = try Model(path: staging)
            let e = try worstError(written.graph.outputs, try written.predictAll([written.inputName: check.input]), check.expected)
            try refuse(e, input: input, what: "the converted model")
            guard rename(staging, output) == 0 else {
                throw CNXError("\(output): cannot write (\(String(cString: strerror(errno))))")
            }
            return e
        } catch {
            unlink(staging)
            throw error
        }
    }

    // MARK: - Comparing outputs

    /// The relative error above which a conversion is refused: the largest absolute difference
    /// over the largest magnitude of the expected output (see `relativeError`), worst output.
    /// Float32 passes reassociate sums and fold constants, which moves results by a few ulps
    /// times the depth; a wrong rewrite moves them by far more.
    public static let tolerance: Float = 1e-4

    /// max |a - e| / max |e| over the elements (max |a - e| when e is all zero).
    public static func relativeError(_ a: Tensor, _ e: Tensor) -> Float {
        a.withUnsafeFloats { ap in
            e.withUnsafeFloats { ep in
                var diff: Float = 0, scale: Float = 0
                for i in 0..<min(ap.count, ep.count) {
                    diff = max(diff, abs(ap[i] - ep[i]))
                    scale = max(scale, abs(ep[i]))
                }
                return scale > 0 ? diff / scale : diff
            }
        }
    }

    /// The worst `relativeError` of the named `outputs` in `actual` against `expected` (in the
    /// same order); an output missing or of another shape is refused, naming it.
    static func worstError(_ outputs: [ValueInfo], _ actual: [String: Tensor], _ expected: [Tensor]) throws -> Float {
        var worst: Float = 0
        for (o, e) in zip(outputs, expected) {
            guard let a = actual[o.name], a.shape == e.shape else {
                throw CNXError("output '\(o.name)' has a different shape after optimisation")
            }
            worst = max(worst, relativeError(a, e))
        }
        return worst
    }

    /// Refuses a conversion whose `what` differs from the original beyond `tolerance`.
    static func refuse(_ e: Float, input: String, what: String) throws {
        // Written so that NaN is refused too.
        guard e <= tolerance else {
            throw CNXError(
                "\(input): \(what) differs from the original by a relative error of \(e) (> \(tolerance)) on a random input; nothing was written. Run with --no-verify to write it anyway."
            )
        }
    }

    /// `graph`'s outputs on `x`, on the reference kernels.
    static func run(_ graph: Graph, on x: Tensor, input: String) throws -> [Tensor] {
        guard let name = graph.inputs.first?.name else { throw CNXError("\(input): the graph has no input") }
        return try values(graph.outputs.map(\.name), in: ReferenceExecutor(graph: graph).run([name: x]), input: input)
    }

    /// The named values of a run, in order; one not computed is refused, naming it.
    static func values(_ names: [String], in out: [String: Tensor], input: String) throws -> [Tensor] {
        try names.map { name in
            guard let t = out[name] else { throw CNXError("\(input): value '\(name)' was not computed") }
            return t
        }
    }

    /// The architecture a `.cnx` records (its graph is fused, so it is not recognised again from
    /// depthwise convolutions).
    static func recorded(_ m: [String: MetadataValue], graph: Graph) -> Architecture? {
        guard let depths = m[MetadataKey.depths]?.intsValue, let dims = m[MetadataKey.dims]?.intsValue else { return nil }
        var classes: Int?
        if graph.outputs.count == 1, let s = graph.outputs[0].shape, s.count == 2 { classes = s[1].value }
        return Architecture(
            family: m[MetadataKey.family]?.stringValue ?? "ConvNeXt", variant: m[MetadataKey.variant]?.stringValue,
            depths: depths.map { Int($0) }, dims: dims.map { Int($0) }, classes: classes,
            stem: m[MetadataKey.stem]?.stringValue ?? "unknown", grn: graph.nodes.contains { $0.op == .grn })
    }

    /// The passes that changed the graph, in order, as recorded and reported: a backbone's head
    /// is fused and then dropped, so `fuse-head` is not among its passes; `extract-features`
    /// and `quantize-int8` are added where they ran.
    static func passNames(_ steps: [Pipeline.Step], features: [Int]?, int8: Bool) -> [String] {
        var names = steps.filter { $0.rewrites > 0 }.map(\.pass)
        if features != nil { names.removeAll { $0 == "fuse-head" }; names.append("extract-features") }
        if int8 { names.append("quantize-int8") }
        return names
    }

    /// The values of `graph` (as the source has it, unoptimised) that are the outputs of the
    /// given stages: the last block of each stage, a block being a depthwise 7x7 convolution and
    /// the residual Add that takes the convolution's input; nil when the graph is not laid out so.
    public static func stageOutputs(_ graph: Graph, stages: [Int]) -> [String]? {
        guard let a = Architecture.recognise(graph) else { return nil }
        var blockOutputs: [String] = []
        for (i, n) in graph.nodes.enumerated() where n.op == .conv {
            guard n.inputs.count > 1, let w = graph.initializers[n.inputs[1]], w.shape.count == 4, w.shape[1] == 1,
                w.shape[2] == 7, w.shape[3] == 7, let group = n.int("group"), group == w.shape[0], group > 1
            else { continue }
            let x = n.inputs[0]
            guard let add = graph.nodes[(i + 1)...].first(where: { $0.op == .add && $0.inputs.contains(x) }) else { return nil }
            blockOutputs.append(add.outputs[0])
        }
        guard blockOutputs.count == a.depths.reduce(0, +) else { return nil }
        var names: [String] = []
        for s in stages {
            guard s >= 0, s < a.depths.count else { return nil }
            names.append(blockOutputs[a.depths[0...s].reduce(0, +) - 1])
        }
        return names
    }

    /// Puts the preprocessing and class names given on the command line into the metadata,
    /// after checking them against the model: a size its input fixes otherwise, or a number of
    /// class names that is not its number of classes, is refused.
    static func record(_ recorded: [String: MetadataValue], into metadata: inout [String: MetadataValue], graph: Graph, input: String)
        throws
    {
        if case .ints(let s)? = recorded[MetadataKey.inputSize], let shape = graph.inputs.first?.shape, shape.count == 4,
            let h = shape[2].value, let w = shape[3].value, [Int64(h), Int64(w)] != s
        {
            throw CNXError("\(input): the model's input is fixed at \(h)x\(w); --size \(s[0]) cannot be recorded for it")
        }
        if case .strings(let names)? = recorded[MetadataKey.classNames] {
            guard graph.outputs.count == 1, let shape = graph.outputs[0].shape, shape.count == 2, let classes = shape[1].value else {
                throw CNXError(
                    "\(input): class names (--labels) are for a classifier; this model's outputs are \(graph.outputs.map(\.name).joined(separator: ", "))"
                )
            }
            guard names.count == classes else {
                throw CNXError("--labels: \(names.count) class names for a model with \(classes) classes")
            }
        }
        for (k, v) in recorded { metadata[k] = v }
    }

    /// Runs `graph` (as read from `input`) and the ONNX export `reference` on the same random
    /// input on the reference kernels, and refuses when any output differs by more than
    /// `tolerance` relative: the check that the values the reader assumed are the model's.
    static func checkAgainstReference(_ graph: Graph, input: String, reference: String, assumptions: [Assumption]) throws -> Float {
        let onnx: Graph
        do { onnx = try ONNXReader.load(path: reference) } catch let e as CNXError { throw CNXError("--reference-onnx: \(e.message)") }
        guard let mine = graph.inputs.first, let theirs = onnx.inputs.first, onnx.inputs.count == 1 else {
            throw CNXError("--reference-onnx \(reference): the export must have one input")
        }
        guard onnx.outputs.count == graph.outputs.count else {
            throw CNXError(
                "--reference-onnx \(reference): the export has \(onnx.outputs.count) outputs, \(input) has \(graph.outputs.count)")
        }
        // The export's own sizes where it fixes them (a legacy export fixes height and width).
        let a = sampleShape(theirs), b = sampleShape(mine)
        let shape = zip(a, zip(theirs.shape ?? [], mine.shape ?? [])).map { v, dims in dims.0.value ?? dims.1.value ?? v }
        let x = randomTensor(shape.count == 4 ? shape : b, seed: 0xC0FFEE)
        let expected = try ReferenceExecutor(graph: onnx).run([theirs.name: x])
        let actual = try ReferenceExecutor(graph: graph).run([mine.name: x])
        var worst: Float = 0
        for (o, r) in zip(graph.outputs, onnx.outputs) {
            guard let y = actual[o.name], let e = expected[r.name], y.shape == e.shape else {
                throw CNXError("--reference-onnx \(reference): output '\(r.name)' does not have the shape of \(input)'s '\(o.name)'")
            }
            worst = max(worst, relativeError(y, e))
        }
        guard worst <= tolerance else {
            let assumed = assumptions.isEmpty ? "" : "; the reader assumed " + assumptions.map(\.description).joined(separator: ", ")
            throw CNXError(
                "\(input): its graph differs from the ONNX export \(reference) by a relative error of \(worst) (> \(tolerance)) on a random input; nothing was written\(assumed); set what differs with --layer-norm-eps, --activation or --norm"
            )
        }
        return worst
    }

    /// A concrete input shape for a graph input: symbolic batch 1, symbolic height and width 32
    /// (the smallest a ConvNeXt takes, so the check costs little).
    public static func sampleShape(_ info: ValueInfo, spatial: Int = 32) -> [Int] {
        guard let shape = info.shape else { return [1, 3, spatial, spatial] }
        return shape.enumerated().map { i, d in d.value ?? (i == 0 ? 1 : i == 1 ? 3 : spatial) }
    }

    /// Deterministic pseudo-random values in [-2, 2).
    public static func randomTensor(_ shape: [Int], seed: UInt64 = 0x5eed) -> Tensor {
        var state = seed
        let t = Tensor(zeros: .float32, shape: shape)
        t.withUnsafeMutableFloats { p in
            for i in p.indices {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                p[i] = Float(state >> 40) / Float(1 << 24) * 4 - 2
            }
        }
        return t
    }

    static func describe(source path: String, format: String, architecture a: Architecture?, inputs: [ValueInfo], steps: [Pipeline.Step])
        throws -> [String: MetadataValue]
    {
        var m: [String: MetadataValue] = [
            MetadataKey.sourceFileName: .string(URL(fileURLWithPath: path).lastPathComponent),
            MetadataKey.converterVersion: .string(converterVersion),
            MetadataKey.converterPasses: .strings(steps.filter { $0.rewrites > 0 }.map(\.pass)),
        ]
        // Preprocessing is recorded only when the source says it (a timm config.json beside a
        // checkpoint); an ONNX file does not, and a guess would be trusted as a fact.
        if let a {
            m[MetadataKey.architecture] = .string("convnext")
            m[MetadataKey.family] = .string(a.family)
            if let v = a.variant { m[MetadataKey.variant] = .string(v) }
            m[MetadataKey.depths] = .ints(a.depths.map(Int64.init))
            m[MetadataKey.dims] = .ints(a.dims.map(Int64.init))
            if let c = a.classes { m[MetadataKey.classes] = .int(Int64(c)) }
            m[MetadataKey.stem] = .string(a.stem)
        }
        // The size is recorded when the graph fixes it; for a dynamic one, only when the source or
        // --size says it (224 would be a guess that `run` then reports as the file's).
        if let shape = inputs.first?.shape, shape.count == 4, let h = shape[2].value, let w = shape[3].value {
            m[MetadataKey.inputSize] = .ints([Int64(h), Int64(w)])
        }
        return m
    }
}

/// A value computed on a background thread; `value()` waits for it.
final class BackgroundResult<T>: @unchecked Sendable {
    private var result: Result<T, Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ work: @escaping () throws -> T) {
        Thread.detachNewThread { [self] in
            result = Result { try work() }
            done.signal()
        }
    }

    func value() throws -> T {
        done.wait()
        done.signal()
        guard let result else { throw CNXError("background work vanished") }
        return try result.get()
    }
}
