import CNXGraph
import Foundation

/// Named tensors read from a checkpoint, in the order the file holds them.
public struct StateDict {
    public var names: [String]
    public var tensors: [String: Tensor]
    /// Free-form string metadata the file carries (safetensors' `__metadata__`).
    public var metadata: [String: String]

    public init(names: [String], tensors: [String: Tensor], metadata: [String: String] = [:]) {
        self.names = names
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The same tensors without the prefixes training wrappers add to every key
    /// (`module.` from DataParallel, `_orig_mod.` from torch.compile, `model.`), applied while
    /// every key carries one.
    public func strippingWrapperPrefixes() -> StateDict {
        var out = self
        var changed = true
        while changed {
            changed = false
            for prefix in ["module.", "_orig_mod.", "model."] where !out.names.isEmpty && out.names.allSatisfy({ $0.hasPrefix(prefix) }) {
                var tensors: [String: Tensor] = [:]
                for (k, v) in out.tensors { tensors[String(k.dropFirst(prefix.count))] = v }
                out.names = out.names.map { String($0.dropFirst(prefix.count)) }
                out.tensors = tensors
                changed = true
            }
        }
        return out
    }
}

/// Builds a ConvNeXt `Graph` from a state dict: the ONNX-operator graph that the legacy (opset
/// 17) exporter writes for the same network, so that every later stage is shared.
///
/// The naming scheme is the one of `NamingScheme.all` whose expected keys explain the most of the
/// checkpoint's keys; depths, widths, kernels, the stem, GRN and layer scale, the MLP's form and
/// hidden width, the head's layout and the classes are read off which keys exist and the
/// tensors' shapes. Any key left unexplained or any expected key absent is an error that lists
/// them and names the closest scheme. What the weights do not carry (the norms' kind and
/// epsilons, the activation, GRN's epsilon) comes from `HyperparameterResolver`.
///
/// The graph, with input `input` [batch, C_in, height, width] and output `logits` [batch, classes]
/// (`features` [batch, C] for a headless model; the stage maps for a transformers backbone):
///
///     stem:        Conv k x k stride k (or: Conv 3x3 s2 p1, [act], Conv 3x3 s2 p1) -> norm (channels-first)
///     downsample:  norm (channels-first) -> Conv k x k stride k
///     block (Linear MLP):  Conv (depthwise, pads k/2) -> Transpose(0,2,3,1) -> norm (channels-last)
///                  -> MatMul(W1^T) -> Add(b1) -> act [-> GRN over axes (1, 2)]
///                  -> MatMul(W2^T) -> Add(b2) -> Transpose(0,3,1,2) [-> Mul(layer scale)] -> Add(block input)
///     block (conv_mlp):    Conv (depthwise) -> norm (channels-first) -> Conv 1x1 -> act
///                  [-> GRN over axes (2, 3)] -> Conv 1x1 [-> Mul(layer scale)] -> Add(block input)
///     head:        GlobalAveragePool -> norm (channels-first) -> Flatten [-> Gemm -> act] [-> Gemm]
///                  or (head_norm_first) norm (channels-first) -> GlobalAveragePool -> Flatten [-> Gemm]
///                  or (the paper's code, transformers) ReduceMean(axes -2, -1) -> norm (last axis) [-> Gemm]
///
/// with the norms as the exporter writes them: LayerNorm as LayerNormalization (channels-first:
/// between two Transposes); RMS norm as Pow(2), ReduceMean over the channels, Add(eps), Sqrt,
/// Div(1, .), Mul(x), Mul(weight); simple norm (channels-last, between Transposes) as ReduceMean,
/// Sub, Mul, ReduceMean, Mul(C), Div(C - 1), Add(eps), Sqrt, Div(1, .), Mul(x), Mul(weight) (the
/// unbiased variance, with the channel count folded to constants as FoldConstants does to the
/// exporter's Shape chain); erf GELU as Gelu, tanh GELU as Gelu(approximate=tanh), SiLU as
/// Sigmoid and Mul.
///
/// Weights are the checkpoint's tensors (views of a mapped file stay views) except the Linear
/// pointwise layers', which MatMul needs transposed: those are copied, and the source's pages released.
public enum StateDictGraph {
    /// A stem module, in order.
    enum StemModule: Equatable {
        case conv(String)
        case norm(String)
        case activation
    }

    /// A ConvNeXt's parts as one naming scheme names them in one checkpoint.
    struct Layout {
        let scheme: NamingScheme
        var stem: [StemModule] = []
        /// Block prefixes, per stage.
        var stages: [[String]] = []
        /// Downsample (norm, conv) module names by stage.
        var downsample: [Int: (norm: String, conv: String)] = [:]
        /// timm's `norm_pre` (head_norm_first).
        var headNormFirst: String?
        /// The norm after pooling.
        var headNorm: String?
        /// timm's `head.pre_logits.fc`.
        var headPreLogits: String?
        /// The classifier; nil for a headless model.
        var headFC: String?
        /// transformers' backbone: (output name, stage index or -1 for the stem, norm module).
        var featureNorms: [(output: String, stage: Int, module: String)] = []
        /// False for timm's RMS and simple norms.
        var normHasBias = true
        /// Every key the layout reads, in order.
        var expected: [String] = []
        var missing: [String] = []
        var unknown: [String] = []
        var explained = 0
    }

    /// What `build` returns.
    public struct Built {
        public var graph: Graph
        public var scheme: NamingScheme
        public var hyperparameters: Hyperparameters
        /// The classifier's classes; nil for a headless model or a backbone.
        public var classes: Int?
    }

    /// Builds the graph of `stateDict`; `source` (a file name) goes into messages and metadata.
    /// `options` (the command line) and `config` (the checkpoint's `config.json`, read from
    /// `configPath`) say what the weights do not.
    public static func build(
        _ stateDict: StateDict, format: String, source: String,
        options: CheckpointOptions = CheckpointOptions(),
        config: ModelConfig? = nil, configPath: String = "config.json"
    ) throws -> Built {
        let sd = stateDict.strippingWrapperPrefixes()
        let layout = try bestLayout(sd)
        let facts = try weightFacts(layout, sd.tensors)
        let layers = try hyperparameterLayers(
            facts, options: options, config: config, configPath: configPath, tensors: sd.tensors, layout: layout)
        let hp = try HyperparameterResolver.resolve(facts, layers)
        var builder = Builder(tensors: sd.tensors, hp: hp)
        let graph = try builder.build(layout, format: format, source: source)
        return Built(
            graph: graph, scheme: layout.scheme, hyperparameters: hp,
            classes: layout.headFC == nil ? nil : graph.outputs.first?.shape?.last?.value)
    }

    /// The layout of the scheme that explains the most keys; an error when even it leaves keys
    /// unexplained or misses some.
    static func bestLayout(_ sd: StateDict) throws -> Layout {
        let layouts = NamingScheme.all.map { plan($0, sd) }
        guard let best = layouts.max(by: { $0.explained < $1.explained }) else { throw CNXError("no naming schemes") }
        // `max` keeps the last of equals; ties go to the earlier scheme.
        let chosen = layouts.first { $0.explained == best.explained } ?? best
        if chosen.missing.isEmpty && chosen.unknown.isEmpty { return chosen }
        func list(_ keys: [String]) -> String {
            keys.prefix(20).joined(separator: ", ") + (keys.count > 20 ? ", … (\(keys.count) in all)" : "")
        }
        var names: [String] = []
        for s in NamingScheme.all where !names.contains(s.name) { names.append(s.name) }
        var parts = ["the checkpoint's keys are not those of a ConvNeXt in a known naming scheme (\(names.joined(separator: ", ")))"]
        parts.append("the closest is \(chosen.scheme.name), which explains \(chosen.explained) of \(sd.names.count) keys")
        if !chosen.unknown.isEmpty { parts.append("\(chosen.unknown.count) unknown: \(list(chosen.unknown))") }
        if !chosen.missing.isEmpty { parts.append("\(chosen.missing.count) missing: \(list(chosen.missing))") }
        throw CNXError(parts.joined(separator: "; "))
    }

    /// What `scheme` would read from `sd`: its parts, the keys it expects, those it misses.
    static func plan(_ scheme: NamingScheme, _ sd: StateDict) -> Layout {
        let keys = Set(sd.names)
        var layout = Layout(scheme: scheme)
        func need(_ module: String) { layout.expected += [module + ".weight", module + ".bias"] }
        func exists(_ module: String) -> Bool { keys.contains(module + ".weight") }
        let p = scheme.modelPrefix

        // Stages and their blocks.
        let blockExists = { (i: Int, j: Int) in exists(scheme.expand(scheme.block, i: i, j: j) + scheme.depthwise) }
        var i = 0
        while i < (scheme.isotropic ? 1 : 16), blockExists(i, 0) {
            var blocks: [String] = []
            var j = 0
            while blockExists(i, j) {
                blocks.append(scheme.expand(scheme.block, i: i, j: j))
                j += 1
            }
            layout.stages.append(blocks)
            i += 1
        }
        // timm's RMS and simple norms have no bias: the first block's norm tells.
        if scheme.allowsBiasFreeNorms, let first = layout.stages.first?.first {
            layout.normHasBias = keys.contains(first + scheme.norm + ".bias")
        }
        func needNorm(_ module: String) {
            layout.expected.append(module + ".weight")
            if layout.normHasBias { layout.expected.append(module + ".bias") }
        }

        // Stem.
        if scheme.stem.contains("{k}") {
            var found: [(Int, String)] = []
            for k in 0..<8 where exists(scheme.expand(scheme.stem, k: k)) { found.append((k, scheme.expand(scheme.stem, k: k))) }
            if found.isEmpty {
                need(scheme.expand(scheme.stem, k: 0))
                need(scheme.expand(scheme.stem, k: 1))
            } else {
                var last = -1
                for (k, module) in found {
                    if k > last + 1 && last >= 0 { layout.stem.append(.activation) }
                    if (sd.tensors[module + ".weight"]?.shape.count ?? 0) == 4 {
                        layout.stem.append(.conv(module))
                        need(module)
                    } else {
                        layout.stem.append(.norm(module))
                        needNorm(module)
                    }
                    last = k
                }
            }
        } else {
            layout.stem = [.conv(p + scheme.stem)]
            need(p + scheme.stem)
            if let norm = scheme.stemNorm {
                layout.stem.append(.norm(p + norm))
                needNorm(p + norm)
            }
        }

        if layout.stages.isEmpty { need(scheme.expand(scheme.block, i: 0, j: 0) + scheme.depthwise) }
        for (i, blocks) in layout.stages.enumerated() {
            // Stage 0 follows the stem directly (in torchvision's and the reference's naming,
            // index 0 of the downsample list is the stem itself).
            if !scheme.isotropic && i >= 1 {
                let norm = scheme.expand(scheme.downsampleNorm, i: i), conv = scheme.expand(scheme.downsampleConv, i: i)
                layout.downsample[i] = (norm, conv)
                needNorm(norm)
                need(conv)
            }
            for b in blocks {
                need(b + scheme.depthwise)
                needNorm(b + scheme.norm)
                need(b + scheme.fc1)
                need(b + scheme.fc2)
                if keys.contains(b + scheme.layerScale) { layout.expected.append(b + scheme.layerScale) }
                if let s = scheme.grnScale, let g = scheme.grnShift, keys.contains(b + s) || keys.contains(b + g) {
                    layout.expected += [b + s, b + g]
                }
            }
        }

        // Head: transformers' backbone norms, or a head (whose classifier may be absent).
        if let template = scheme.featureNorm {
            let names = ["stem"] + layout.stages.indices.map { "stage\($0 + 1)" }
            for (index, name) in names.enumerated() {
                let module = p + template.replacingOccurrences(of: "{name}", with: name)
                if exists(module) {
                    layout.featureNorms.append((name == "stem" ? "stem" : "stage\(index - 1)", index - 1, module))
                    needNorm(module)
                }
            }
        }
        if layout.featureNorms.isEmpty {
            if let first = scheme.headNormFirst, exists(p + first) {
                layout.headNormFirst = p + first
                needNorm(p + first)
            } else {
                layout.headNorm = p + scheme.headNorm
                needNorm(p + scheme.headNorm)
                if let pre = scheme.headPreLogits, exists(p + pre) {
                    layout.headPreLogits = p + pre
                    need(p + pre)
                }
            }
            if keys.contains(scheme.headFC + ".weight") || keys.contains(scheme.headFC + ".bias") {
                layout.headFC = scheme.headFC
                need(scheme.headFC)
            }
        }

        let expected = Set(layout.expected)
        layout.missing = layout.expected.filter { !keys.contains($0) }
        layout.unknown = sd.names.filter { !expected.contains($0) }
        layout.explained = sd.names.count - layout.unknown.count
        return layout
    }

    /// What the weights show, beyond the values: what the hyperparameters are matched against.
    static func weightFacts(_ layout: Layout, _ tensors: [String: Tensor]) throws -> WeightFacts {
        let s = layout.scheme
        func shape(_ key: String) -> [Int] { tensors[key]?.shape ?? [] }
        let dws = layout.stages.map { shape($0[0] + s.depthwise + ".weight") }
        let dims = dws.map { $0.first ?? 0 }
        let kernels = dws.map { $0.count == 4 ? $0[2] : 0 }
        let firstBlock = layout.stages.first?.first ?? ""
        let convMLP = shape(firstBlock + s.fc1 + ".weight").count == 4
        let blocks = layout.stages.flatMap { $0 }
        let grn = s.grnScale.map { g in blocks.contains { tensors[$0 + g] != nil } } ?? false
        let layerScale = blocks.contains { tensors[$0 + s.layerScale] != nil }
        var stem = WeightFacts.Stem.patch
        let convs = layout.stem.compactMap { if case .conv(let m) = $0 { return m } else { return nil } }
        if layout.stem.contains(.activation) {
            stem = .overlapAct
        } else if convs.count > 1 {
            stem = shape(convs[0] + ".weight").first == dims.first ? .overlap : .overlapTiered
        }
        var head = WeightFacts.Head.poolNormFC
        if !layout.featureNorms.isEmpty {
            head = .features
        } else if layout.headNormFirst != nil {
            head = .normFirst
        } else if let pre = layout.headPreLogits {
            head = .mlp(hidden: shape(pre + ".weight").first ?? 0)
        }
        var sites: Set<NormSite> = [.block]
        if layout.stem.contains(where: { if case .norm = $0 { return true } else { return false } }) { sites.insert(.stem) }
        if !layout.downsample.isEmpty { sites.insert(.downsample) }
        if layout.headNorm != nil || layout.headNormFirst != nil { sites.insert(.head) }
        if !layout.featureNorms.isEmpty { sites.insert(.features) }
        return WeightFacts(
            scheme: s, depths: layout.stages.map(\.count), dims: dims, kernels: kernels, convMLP: convMLP,
            grn: grn, layerScale: layerScale, stem: stem, head: head, normHasBias: layout.normHasBias,
            sites: sites)
    }

    /// The flags, the checkpoint's configuration, the known variants the weights match, and the
    /// scheme's defaults, as proposals for each value the weights do not carry.
    static func hyperparameterLayers(
        _ facts: WeightFacts, options: CheckpointOptions, config: ModelConfig?,
        configPath: String, tensors: [String: Tensor], layout: Layout
    ) throws -> HyperparameterResolver.Layers {
        var flags = Proposal(source: "the command line", norm: options.norm, eps: options.layerNormEps, activation: options.activation)
        flags.sources = ["norm": "--norm", "eps": "--layer-norm-eps", "activation": "--activation"]
        let s = facts.scheme
        let allSites = { (v: Float) in Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, v) }) }
        var layers = HyperparameterResolver.Layers(flags: flags, config: nil, defaults: Proposal(source: ""))

        switch s.origin {
        case "timm":
            if let c = config?.transformers {
                throw CNXError("\(c.path): a transformers config.json, but the weights are in timm's naming")
            }
            if let c = config?.timm {
                layers.config = try timmConfigProposal(c, facts: facts, configPath: configPath)
            }
            let (variants, phrase) = TimmVariant.candidates(for: facts)
            layers.candidates = variants.map { ($0.name, $0.proposal(source: phrase)) }
            layers.candidateSource = phrase
            let note = variants.isEmpty ? "timm's default; no registered timm variant has these depths and widths" : "timm's default"
            var d = Proposal(
                source: note, norm: facts.normHasBias ? .layerNorm : nil, eps: allSites(1e-6),
                activation: .gelu, headActivation: .gelu, grnEps: 1e-6)
            d.sources["head_activation"] = "timm's ConvNeXt head, fixed in its code"
            layers.defaults = d
        case "transformers":
            if let c = config?.timm, c.architecture != nil {
                throw CNXError("\(configPath): a timm config.json, but the weights are in transformers' naming")
            }
            if let c = config?.transformers {
                layers.config = try transformersConfigProposal(c, facts: facts, tensors: tensors, layout: layout)
            }
            var d = Proposal(
                source: "transformers' ConvNeXt, fixed in its code", norm: .layerNorm, eps: allSites(1e-6),
                activation: .gelu, grnEps: 1e-6)
            d.eps[.head] = 1e-12
            d.sources["eps.head"] = "transformers' default layer_norm_eps; no config.json says otherwise"
            d.sources["activation"] = "transformers' default hidden_act; no config.json says otherwise"
            layers.defaults = d
        default:
            let where_ = s.origin == "torchvision" ? "torchvision's ConvNeXt, fixed in its code" : "the paper's code, fixed there"
            layers.defaults = Proposal(
                source: where_, norm: .layerNorm,
                eps: allSites(1e-6), activation: .gelu, grnEps: 1e-6)
        }
        return layers
    }

    /// What a timm `config.json` says: its architecture's registered values, and `model_args`.
    static func timmConfigProposal(_ c: TimmHubConfig, facts: WeightFacts, configPath: String) throws -> Proposal? {
        var proposal: Proposal?
        if let arch = c.architecture, let v = TimmVariant.named(arch) {
            let depths = c.modelArgs.depths ?? v.depths, dims = c.modelArgs.dims ?? v.dims
            guard depths == facts.depths, dims == facts.dims else {
                throw CNXError(
                    "\(configPath): architecture \(arch) has depths \(depths) and widths \(dims), but the weights have \(facts.depths) and \(facts.dims)"
                )
            }
            proposal = v.proposal(source: "config.json: architecture \(arch)")
        }
        let args = c.modelArgs
        if args.normEps != nil || args.normEpsIsNull || args.actLayer != nil || args.normLayer != nil {
            var p = proposal ?? Proposal(source: "config.json")
            if let e = args.normEps {
                p.eps = Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, e) })
                p.sources["eps"] = "config.json: model_args.norm_eps"
            } else if args.normEpsIsNull {
                p.eps = Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, 1e-6) })
                p.sources["eps"] = "config.json: model_args.norm_eps is null, timm's default"
            }
            /// A layer `model_args` names by its timm name, or nil when it names none; a name
            /// `parse` does not know is refused, listing the `known` ones.
            func layer<T>(_ name: String?, key: String, _ what: String, known: String, _ parse: (String) -> T?) throws -> T? {
                guard let name else { return nil }
                guard let value = parse(name) else {
                    throw CNXError("\(configPath): model_args.\(key) '\(name)' is not \(what) this reader knows (\(known))")
                }
                return value
            }
            if let act = try layer(
                args.actLayer, key: "act_layer", "an activation", known: "gelu, gelu_tanh, silu", Activation.init(timmName:))
            {
                p.activation = act
                p.sources["activation"] = "config.json: model_args.act_layer"
            }
            if let kind = try layer(
                args.normLayer, key: "norm_layer", "a norm", known: "layernorm, rmsnorm, simplenorm", NormKind.init(timmName:))
            {
                p.norm = kind
                p.sources["norm"] = "config.json: model_args.norm_layer"
            }
            proposal = p
        }
        return proposal
    }

    /// What a transformers `config.json` says, after checking it against the weights.
    static func transformersConfigProposal(
        _ c: TransformersConfig, facts: WeightFacts, tensors: [String: Tensor],
        layout: Layout
    ) throws -> Proposal {
        let path = c.path
        let weightsSay = "the weights have"
        if let h = c.hiddenSizes, h != facts.dims {
            throw CNXError("\(path): hidden_sizes \(h), but \(weightsSay) widths \(facts.dims)")
        }
        if let d = c.depths, d != facts.depths {
            throw CNXError("\(path): depths \(d), but \(weightsSay) depths \(facts.depths)")
        }
        if let n = c.numStages, n != facts.depths.count {
            throw CNXError("\(path): num_stages \(n), but \(weightsSay) \(facts.depths.count) stages")
        }
        if case .conv(let stem)? = layout.stem.first, let w = tensors[stem + ".weight"], w.shape.count == 4 {
            if let n = c.numChannels, n != w.shape[1] {
                throw CNXError("\(path): num_channels \(n), but \(weightsSay) \(w.shape[1]) input channels")
            }
            if let p = c.patchSize, p != w.shape[2] {
                throw CNXError("\(path): patch_size \(p), but \(weightsSay) a \(w.shape[2])x\(w.shape[3]) stem")
            }
        }
        if (c.modelType == "convnextv2") != facts.grn {
            throw CNXError(
                "\(path): model_type \(c.modelType), but \(weightsSay) \(facts.grn ? "GRN (ConvNeXt V2)" : "no GRN (ConvNeXt V1)")")
        }
        if let fc = layout.headFC, let w = tensors[fc + ".weight"], w.shape.count == 2, let labels = c.labels, labels.count != w.shape[0] {
            throw CNXError("\(path): id2label has \(labels.count) labels, but \(weightsSay) \(w.shape[0]) classes")
        }
        var p = Proposal(source: "config.json")
        if let a = c.hiddenAct {
            guard let act = Activation(transformersName: a) else {
                throw CNXError(
                    "\(path): hidden_act '\(a)' is not an activation this reader knows (gelu, gelu_python, gelu_new, gelu_fast, gelu_accurate, gelu_python_tanh, gelu_pytorch_tanh, silu, swish)"
                )
            }
            p.activation = act
            p.sources["activation"] = "config.json: hidden_act \(a)"
        }
        if let e = c.layerNormEps {
            p.eps[.head] = e
            p.sources["eps.head"] = "config.json: layer_norm_eps"
        }
        return p
    }

    /// Writes the graph node by node, taking the tensors it needs from the state dict.
    struct Builder {
        let tensors: [String: Tensor]
        let hp: Hyperparameters
        var nodes: [Node] = []
        var initializers: [String: Tensor] = [:]

        init(tensors: [String: Tensor], hp: Hyperparameters) {
            self.tensors = tensors
            self.hp = hp
        }

        // MARK: tensors

        /// A float tensor of the checkpoint, checked against the shapes it may have.
        func param(_ key: String, _ shapes: [[Int]]) throws -> Tensor {
            guard let t = tensors[key] else { throw CNXError("missing tensor '\(key)'") }
            guard t.dtype == .float32 else {
                throw CNXError("tensor '\(key)' holds \(t.dtype.name) values; a weight must be floating point")
            }
            guard shapes.isEmpty || shapes.contains(t.shape) else {
                throw CNXError("tensor '\(key)' has shape \(t.shape); expected \(shapes.map { "\($0)" }.joined(separator: " or "))")
            }
            return t
        }

        /// Adds a checkpoint tensor as an initializer under its own name (reshaped, a view).
        mutating func use(_ key: String, _ shapes: [[Int]], as shape: [Int]? = nil) throws -> String {
            let t = try param(key, shapes)
            initializers[key] = shape.map { t.reshaped($0) } ?? t
            return key
        }

        /// A scalar constant.
        mutating func constant(_ value: Float, _ name: String) -> String {
            initializers[name] = Tensor(floats: [value], shape: [])
            return name
        }

        /// A pointwise layer's weight (out, in) or (out, in, 1, 1), transposed to (in, out) for
        /// MatMul. The copy replaces the source, whose mapped pages are given back at once.
        mutating func transposedWeight(_ key: String, out: Int, in inputs: Int) throws -> String {
            let t = try param(key, [[out, inputs], [out, inputs, 1, 1]])
            let result = Tensor(zeros: .float32, shape: [inputs, out])
            result.withUnsafeMutableFloats { dst in
                t.withUnsafeFloats { src in
                    let tile = 32
                    for r0 in stride(from: 0, to: out, by: tile) {
                        for c0 in stride(from: 0, to: inputs, by: tile) {
                            for r in r0..<min(r0 + tile, out) {
                                for c in c0..<min(c0 + tile, inputs) { dst[c * out + r] = src[r * inputs + c] }
                            }
                        }
                    }
                }
            }
            t.storage.dropPages()
            let name = key + "_transposed"
            initializers[name] = result
            return name
        }

        // MARK: nodes

        mutating func node(_ op: OpType, _ inputs: [String], _ name: String, _ attributes: [String: Attribute] = [:]) -> String {
            nodes.append(Node(name: name, op: op, inputs: inputs, outputs: [name], attributes: attributes))
            return name
        }

        mutating func transpose(_ x: String, _ perm: [Int], _ name: String) -> String {
            node(.transpose, [x], name, ["perm": .ints(perm)])
        }

        /// The activation `a` of `x`.
        mutating func activation(_ x: String, _ a: Activation, _ name: String) -> String {
            switch a {
            case .gelu: return node(.gelu, [x], name, ["approximate": .string("none")])
            case .geluTanh: return node(.gelu, [x], name, ["approximate": .string("tanh")])
            case .silu: return node(.mul, [x, node(.sigmoid, [x], name + ".sigmoid")], name)
            }
        }

        // MARK: norms

        /// The norm `module` over the last axis of `x` (channels-last), of the resolved kind.
        mutating func normLast(_ x: String, _ module: String, channels c: Int, site: NormSite, _ name: String) throws -> String {
            let eps = hp.eps(site)
            switch hp.norm {
            case .layerNorm:
                let w = try use(module + ".weight", [[c]]), b = try use(module + ".bias", [[c]])
                return node(.layerNormalization, [x, w, b], name, ["axis": .int(-1), "epsilon": .float(eps)])
            case .rmsNorm:
                return try rmsNorm(x, module, channels: c, axis: -1, eps: eps, name)
            case .simpleNorm:
                let w = try use(module + ".weight", [[c]])
                let mean = node(.reduceMean, [x], name + ".mean", ["axes": .ints([-1]), "keepdims": .int(1)])
                let d = node(.sub, [x, mean], name + ".centred")
                let v = node(
                    .reduceMean, [node(.mul, [d, d], name + ".square")], name + ".var", ["axes": .ints([-1]), "keepdims": .int(1)])
                // torch.var: the unbiased (n - 1) variance.
                let scaled = node(.mul, [v, constant(Float(c), name + ".n")], name + ".var_n")
                let unbiased = node(.div, [scaled, constant(Float(c - 1), name + ".n_minus_1")], name + ".var_unbiased")
                let inv = inverseSqrt(unbiased, eps: eps, name)
                return node(.mul, [node(.mul, [x, inv], name + ".normed"), w], name)
            }
        }

        /// The norm `module` over the channels of an NCHW `x`, as timm's 2-D norms and the
        /// transformers' channels_first LayerNorm compute it.
        mutating func normFirst(_ x: String, _ module: String, channels c: Int, site: NormSite, _ name: String) throws -> String {
            if hp.norm == .rmsNorm {
                return try rmsNorm(x, module, channels: c, axis: 1, eps: hp.eps(site), name)
            }
            let t = transpose(x, [0, 2, 3, 1], name + ".to_nhwc")
            let n = try normLast(t, module, channels: c, site: site, name + ".norm")
            return transpose(n, [0, 3, 1, 2], name)
        }

        /// x / sqrt(mean(x^2) + eps) * w over `axis` (timm's rms_norm2d, and its channels-last twin).
        mutating func rmsNorm(_ x: String, _ module: String, channels c: Int, axis: Int, eps: Float, _ name: String) throws -> String {
            let w = try use(module + ".weight", [[c]], as: axis == 1 ? [1, c, 1, 1] : [c])
            let square = node(.pow, [x, constant(2, name + ".two")], name + ".square")
            let mean = node(.reduceMean, [square], name + ".mean_square", ["axes": .ints([axis]), "keepdims": .int(1)])
            let inv = inverseSqrt(mean, eps: eps, name)
            return node(.mul, [node(.mul, [x, inv], name + ".normed"), w], name)
        }

        /// 1 / sqrt(v + eps), as the exporter writes rsqrt.
        mutating func inverseSqrt(_ v: String, eps: Float, _ name: String) -> String {
            let root = node(.sqrt, [node(.add, [v, constant(eps, name + ".eps")], name + ".add_eps")], name + ".sqrt")
            return node(.div, [constant(1, name + ".one"), root], name + ".rsqrt")
        }

        /// A convolution with a square kernel; returns (output, out channels, kernel).
        mutating func conv(
            _ x: String, _ module: String, inChannels: Int, stride: Int?, padding: Int, group: Int = 1,
            _ name: String
        ) throws -> (String, Int, Int) {
            let w = try param(module + ".weight", [])
            guard w.shape.count == 4, w.shape[2] == w.shape[3], w.shape[2] >= 1, w.shape[1] * group == inChannels else {
                throw CNXError("tensor '\(module).weight' has shape \(w.shape); expected (out, \(inChannels / group), k, k)")
            }
            let (cout, k) = (w.shape[0], w.shape[2])
            let s = stride ?? k
            _ = try use(module + ".weight", [w.shape])
            let b = try use(module + ".bias", [[cout]])
            var attributes: [String: Attribute] = [
                "kernel_shape": .ints([k, k]), "strides": .ints([s, s]), "pads": .ints([padding, padding, padding, padding]),
                "dilations": .ints([1, 1]),
            ]
            if group > 1 { attributes["group"] = .int(group) }
            return (node(.conv, [x, module + ".weight", b], name, attributes), cout, k)
        }

        // MARK: the network

        mutating func build(_ layout: Layout, format: String, source: String) throws -> Graph {
            let s = layout.scheme
            // The stem's first convolution fixes the input channels.
            guard case .conv(let first)? = layout.stem.first else {
                throw CNXError("the stem (\(s.stem)) must start with a convolution")
            }
            let w0 = try param(first + ".weight", [])
            guard w0.shape.count == 4 else { throw CNXError("tensor '\(first).weight' has shape \(w0.shape); expected (out, in, k, k)") }
            let inChannels = w0.shape[1]
            var x = "input", c = inChannels

            // Stem: one patchify convolution, or overlapping 3x3 stride-2 convolutions.
            let convCount = layout.stem.filter { if case .conv = $0 { return true } else { return false } }.count
            for (k, module) in layout.stem.enumerated() {
                switch module {
                case .conv(let m):
                    if convCount == 1 {
                        (x, c, _) = try conv(x, m, inChannels: c, stride: nil, padding: 0, "stem.conv")
                    } else {
                        let kernel = try param(m + ".weight", []).shape.last ?? 0
                        guard kernel % 2 == 1 else {
                            throw CNXError("tensor '\(m).weight': an overlapping stem needs odd kernels, found \(kernel)x\(kernel)")
                        }
                        (x, c, _) = try conv(x, m, inChannels: c, stride: 2, padding: kernel / 2, "stem.conv\(k)")
                    }
                case .activation:
                    x = activation(x, hp.activation, "stem.act\(k)")
                case .norm(let m):
                    guard k == layout.stem.count - 1 else { throw CNXError("the stem's norm '\(m)' must come last") }
                    x = try normFirst(x, m, channels: c, site: .stem, "stem.norm")
                }
            }
            if !s.isotropic && layout.stem.last.map({ if case .norm = $0 { return false } else { return true } }) ?? true {
                throw CNXError("the stem (\(s.stem)) has no norm after its convolutions")
            }

            var stageOutputs: [Int: (String, Int)] = [-1: (x, c)]
            for (i, blocks) in layout.stages.enumerated() {
                if let ds = layout.downsample[i] {
                    let n = try normFirst(x, ds.norm, channels: c, site: .downsample, "stages.\(i).downsample.norm")
                    (x, c, _) = try conv(n, ds.conv, inChannels: c, stride: nil, padding: 0, "stages.\(i).downsample.conv")
                }
                for (j, p) in blocks.enumerated() {
                    x = try block(x, prefix: p, channels: c, scheme: s, "stages.\(i).blocks.\(j)")
                }
                stageOutputs[i] = (x, c)
            }

            var outputs: [ValueInfo] = []
            if !layout.featureNorms.isEmpty {
                // transformers' backbone: each chosen stage output, normed, channels-first.
                for f in layout.featureNorms {
                    guard let (value, channels) = stageOutputs[f.stage] else { throw CNXError("no stage \(f.stage) for '\(f.module)'") }
                    let y = try normFirst(value, f.module, channels: channels, site: .features, "features.\(f.output)")
                    rename(y, to: f.output)
                    outputs.append(
                        ValueInfo(
                            name: f.output, dtype: .float32,
                            shape: [.symbol("batch"), .fixed(channels), .symbol("\(f.output)_height"), .symbol("\(f.output)_width")]))
                }
            } else {
                var features = c
                var y: String
                if let pre = layout.headNormFirst {
                    let n = try normFirst(x, pre, channels: c, site: .head, "head.norm_pre")
                    y = node(.flatten, [node(.globalAveragePool, [n], "head.pool")], "head.flatten", ["axis": .int(1)])
                } else if s.headPoolsByMean {
                    // norm(x.mean([-2, -1])): the norm over the (N, C) means.
                    let pooled = node(.reduceMean, [x], "head.pool", ["axes": .ints([-2, -1]), "keepdims": .int(0)])
                    y = try normLast(pooled, layout.headNorm ?? s.headNorm, channels: c, site: .head, "head.norm")
                    if let pre = layout.headPreLogits {
                        (y, features) = try gemm(y, pre, inputs: c, "head.pre_logits.fc")
                        y = activation(y, hp.headActivation, "head.pre_logits.act")
                    }
                } else {
                    let pooled = node(.globalAveragePool, [x], "head.pool")
                    let normed = try normFirst(pooled, layout.headNorm ?? s.headNorm, channels: c, site: .head, "head.norm")
                    y = node(.flatten, [normed], "head.flatten", ["axis": .int(1)])
                    if let pre = layout.headPreLogits {
                        (y, features) = try gemm(y, pre, inputs: c, "head.pre_logits.fc")
                        y = activation(y, hp.headActivation, "head.pre_logits.act")
                    }
                }
                if let fc = layout.headFC {
                    let (logits, classes) = try gemm(y, fc, inputs: features, "head.fc")
                    rename(logits, to: "logits")
                    outputs.append(ValueInfo(name: "logits", dtype: .float32, shape: [.symbol("batch"), .fixed(classes)]))
                } else {
                    rename(y, to: "features")
                    outputs.append(ValueInfo(name: "features", dtype: .float32, shape: [.symbol("batch"), .fixed(features)]))
                }
            }

            mergeDuplicateTransposes()
            let graph = Graph(
                inputs: [
                    ValueInfo(
                        name: "input", dtype: .float32, shape: [.symbol("batch"), .fixed(inChannels), .symbol("height"), .symbol("width")])
                ],
                outputs: outputs,
                nodes: nodes, initializers: initializers,
                metadata: [
                    "format": format, "source": source, "producer": "state dict, \(s.name) naming",
                    "producer_version": "", "naming_scheme": s.name, "opset": "17",
                ])
            try Verifier.verify(graph)
            return graph
        }

        /// One Transpose per (input, perm), as the exporter's common-subexpression pass leaves
        /// it: a stage output that is both downsampled and normed as a backbone feature is
        /// permuted once, for both norms.
        mutating func mergeDuplicateTransposes() {
            var seen: [String: String] = [:]
            var replaced: [String: String] = [:]
            var kept: [Node] = []
            for var n in nodes {
                n.inputs = n.inputs.map { replaced[$0] ?? $0 }
                if n.op == .transpose, let perm = n.ints("perm") {
                    let key = "\(n.inputs[0])|\(perm)"
                    if let first = seen[key] {
                        replaced[n.outputs[0]] = first
                        continue
                    }
                    seen[key] = n.outputs[0]
                }
                kept.append(n)
            }
            nodes = kept
        }

        /// Makes the node that writes `value` write `name` instead (a graph output).
        mutating func rename(_ value: String, to name: String) {
            for i in nodes.indices.reversed() where nodes[i].outputs.contains(value) {
                nodes[i].outputs = nodes[i].outputs.map { $0 == value ? name : $0 }
                return
            }
        }

        /// A Linear on a 2-D tensor, as the exporter writes it: Gemm(transB 1). Returns (output, out features).
        mutating func gemm(_ x: String, _ module: String, inputs: Int, _ name: String) throws -> (String, Int) {
            let w = try param(module + ".weight", [])
            guard w.shape.count == 2, w.shape[1] == inputs else {
                throw CNXError("tensor '\(module).weight' has shape \(w.shape); expected (classes, \(inputs))")
            }
            let out = w.shape[0]
            let fw = try use(module + ".weight", [[out, inputs]]), fb = try use(module + ".bias", [[out]])
            return (node(.gemm, [x, fw, fb], name, ["transB": .int(1), "alpha": .float(1), "beta": .float(1)]), out)
        }

        /// One ConvNeXt block on an NCHW tensor of `c` channels.
        mutating func block(_ x: String, prefix p: String, channels c: Int, scheme s: NamingScheme, _ name: String) throws -> String {
            let dw = try param(p + s.depthwise + ".weight", [])
            guard dw.shape.count == 4, dw.shape[0] == c, dw.shape[1] == 1, dw.shape[2] == dw.shape[3], dw.shape[2] % 2 == 1 else {
                throw CNXError(
                    "tensor '\(p)\(s.depthwise).weight' has shape \(dw.shape); expected (\(c), 1, k, k) with k odd (a block of a stage with \(c) channels)"
                )
            }
            let k = dw.shape[2]
            let (d, _, _) = try conv(x, p + s.depthwise, inChannels: c, stride: 1, padding: k / 2, group: c, name + ".dwconv")
            let w1 = try param(p + s.fc1 + ".weight", [])
            guard w1.shape.count == 2 || w1.shape.count == 4, w1.shape[1] == c else {
                throw CNXError("tensor '\(p)\(s.fc1).weight' has shape \(w1.shape); expected (hidden, \(c)) or (hidden, \(c), 1, 1)")
            }
            let hidden = w1.shape[0]
            let hasGRN = s.grnScale.map { tensors[p + $0] != nil } ?? false || s.grnShift.map { tensors[p + $0] != nil } ?? false
            let hasLayerScale = tensors[p + s.layerScale] != nil
            var out: String
            if w1.shape.count == 4 {
                // timm's conv_mlp: the MLP is 1x1 convolutions on NCHW, the norm channels-first.
                let n = try normFirst(d, p + s.norm, channels: c, site: .block, name + ".norm")
                let (h, _, _) = try conv(n, p + s.fc1, inChannels: c, stride: 1, padding: 0, name + ".fc1")
                var g = activation(h, hp.activation, name + ".act")
                if hasGRN { g = try grn(g, p, s, channels: hidden, channelsFirst: true, name + ".grn") }
                let w2 = try param(p + s.fc2 + ".weight", [[c, hidden, 1, 1]])
                _ = w2
                (out, _, _) = try conv(g, p + s.fc2, inChannels: hidden, stride: 1, padding: 0, name + ".fc2")
                if hasLayerScale {
                    let ls = try use(p + s.layerScale, [[c], [c, 1, 1]], as: [1, c, 1, 1])
                    out = node(.mul, [out, ls], name + ".layer_scale")
                }
            } else {
                let t = transpose(d, [0, 2, 3, 1], name + ".to_nhwc")
                let n = try normLast(t, p + s.norm, channels: c, site: .block, name + ".norm")
                let w1t = try transposedWeight(p + s.fc1 + ".weight", out: hidden, in: c)
                let b1 = try use(p + s.fc1 + ".bias", [[hidden]])
                let h = node(.add, [node(.matMul, [n, w1t], name + ".fc1"), b1], name + ".fc1.bias")
                var g = activation(h, hp.activation, name + ".act")
                if hasGRN { g = try grn(g, p, s, channels: hidden, channelsFirst: false, name + ".grn") }
                let w2t = try transposedWeight(p + s.fc2 + ".weight", out: c, in: hidden)
                let b2 = try use(p + s.fc2 + ".bias", [[c]])
                var o = node(.add, [node(.matMul, [g, w2t], name + ".fc2"), b2], name + ".fc2.bias")
                if hasLayerScale && !s.layerScaleChannelsFirst {
                    let ls = try use(p + s.layerScale, [[c], [c, 1, 1]], as: [c])
                    o = node(.mul, [o, ls], name + ".layer_scale")
                }
                out = transpose(o, [0, 3, 1, 2], name + ".to_nchw")
                if hasLayerScale && s.layerScaleChannelsFirst {
                    let ls = try use(p + s.layerScale, [[c], [c, 1, 1]], as: [1, c, 1, 1])
                    out = node(.mul, [out, ls], name + ".layer_scale")
                }
            }
            return node(.add, [out, x], name)
        }

        /// ConvNeXt V2's GRN, written out as the exporters do: over axes (1, 2) of a channels-last
        /// tensor, or (2, 3) of a channels-first one (timm's conv_mlp models).
        mutating func grn(_ x: String, _ p: String, _ s: NamingScheme, channels: Int, channelsFirst: Bool, _ name: String) throws -> String
        {
            guard let scale = s.grnScale.map({ p + $0 }), let shift = s.grnShift.map({ p + $0 }) else { return x }
            let shape = channelsFirst ? [1, channels, 1, 1] : [channels]
            let gamma = try use(scale, [[channels], [1, 1, 1, channels]], as: shape)
            let beta = try use(shift, [[channels], [1, 1, 1, channels]], as: shape)
            let eps = constant(hp.grnEps, name + ".eps")
            let gx = node(.reduceL2, [x], name + ".l2", ["axes": .ints(channelsFirst ? [2, 3] : [1, 2]), "keepdims": .int(1)])
            let mean = node(.reduceMean, [gx], name + ".mean", ["axes": .ints([channelsFirst ? 1 : -1]), "keepdims": .int(1)])
            let nx = node(.div, [gx, node(.add, [mean, eps], name + ".add_eps")], name + ".nx")
            let scaled = node(.mul, [node(.mul, [x, nx], name + ".x_nx"), gamma], name + ".gamma")
            return node(.add, [node(.add, [scaled, beta], name + ".beta"), x], name)
        }
    }
}
