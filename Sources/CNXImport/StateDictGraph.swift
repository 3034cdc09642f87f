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

/// Builds a ConvNeXt `Graph` from a state dict: the same ONNX-operator graph, semantically, that
/// the ONNX reader makes of a legacy (opset 17) export, so that every later stage is shared.
///
/// The naming scheme is the one of `NamingScheme.all` whose expected keys explain the most of the
/// checkpoint's keys; depths, widths, the stem, GRN and layer scale, the MLP's hidden width and
/// the classes are read off which keys exist and the tensors' shapes. Any key left unexplained
/// or any expected key absent is an error that lists them and names the closest scheme.
///
/// The graph, with input `input` [batch, C_in, height, width] and output `logits` [batch, classes]:
///
///     stem:        Conv k x k stride k (or: Conv 3x3 s2 p1, [Gelu], Conv 3x3 s2 p1)
///                  -> Transpose(0,2,3,1) -> LayerNormalization(eps 1e-6) -> Transpose(0,3,1,2)
///     downsample:  Transpose -> LayerNormalization -> Transpose -> Conv k x k stride k
///     block:       Conv (depthwise, pads k/2) -> Transpose(0,2,3,1) -> LayerNormalization
///                  -> MatMul(W1^T) -> Add(b1) -> Gelu
///                  [-> ReduceL2(axes 1,2) -> ReduceMean(axis -1) -> Add(eps) -> Div -> Mul(x) -> Mul(gamma) -> Add(beta) -> Add(x)]
///                  -> MatMul(W2^T) -> Add(b2) [-> Mul(layer scale)] -> Transpose(0,3,1,2) -> Add(block input)
///     head:        GlobalAveragePool -> Transpose -> LayerNormalization -> Transpose -> Flatten -> Gemm(transB 1)
///
/// Weights are the checkpoint's tensors (views of a mapped file stay views) except the pointwise
/// layers', which MatMul needs transposed: those are copied, and the source's pages released.
public enum StateDictGraph {
    static let layerNormEpsilon: Float = 1e-6
    static let grnEpsilon: Float = 1e-6

    /// A stem module, in order.
    enum StemModule: Equatable {
        case conv(String)
        case norm(String)
        case gelu
    }

    /// A ConvNeXt's parts as one naming scheme names them in one checkpoint.
    struct Layout {
        let scheme: NamingScheme
        var stem: [StemModule] = []
        /// Block prefixes, per stage.
        var stages: [[String]] = []
        /// Downsample (norm, conv) module names by stage.
        var downsample: [Int: (norm: String, conv: String)] = [:]
        /// Every key the layout reads, in order.
        var expected: [String] = []
        var missing: [String] = []
        var unknown: [String] = []
        var explained = 0
    }

    /// Builds the graph of `stateDict`; `source` (a file name) goes into messages and metadata.
    public static func build(_ stateDict: StateDict, format: String, source: String) throws -> (graph: Graph, scheme: NamingScheme) {
        let sd = stateDict.strippingWrapperPrefixes()
        let layout = try bestLayout(sd)
        var builder = Builder(tensors: sd.tensors)
        let graph = try builder.build(layout, format: format, source: source)
        return (graph, layout.scheme)
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
        var parts = ["the checkpoint's keys are not those of a ConvNeXt in a known naming scheme (\(NamingScheme.all.map(\.name).joined(separator: ", ")))"]
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

        // Stem.
        if scheme.stem.contains("{k}") {
            var found: [(Int, String)] = []
            for k in 0..<8 where exists(NamingScheme.expand(scheme.stem, k: k)) { found.append((k, NamingScheme.expand(scheme.stem, k: k))) }
            if found.isEmpty {
                need(NamingScheme.expand(scheme.stem, k: 0))
                need(NamingScheme.expand(scheme.stem, k: 1))
            } else {
                var last = -1
                for (k, module) in found {
                    if k > last + 1 && last >= 0 { layout.stem.append(.gelu) }
                    layout.stem.append((sd.tensors[module + ".weight"]?.shape.count ?? 0) == 4 ? .conv(module) : .norm(module))
                    need(module)
                    last = k
                }
            }
        } else {
            layout.stem = [.conv(scheme.stem)]
            need(scheme.stem)
        }

        // Stages and their blocks.
        let blockExists = { (i: Int, j: Int) in exists(NamingScheme.expand(scheme.block, i: i, j: j) + scheme.depthwise) }
        var i = 0
        while i < (scheme.isotropic ? 1 : 16), blockExists(i, 0) {
            var blocks: [String] = []
            var j = 0
            while blockExists(i, j) {
                blocks.append(NamingScheme.expand(scheme.block, i: i, j: j))
                j += 1
            }
            layout.stages.append(blocks)
            i += 1
        }
        if layout.stages.isEmpty { need(NamingScheme.expand(scheme.block, i: 0, j: 0) + scheme.depthwise) }
        for (i, blocks) in layout.stages.enumerated() {
            // Stage 0 follows the stem directly (in torchvision's and the reference's naming,
            // index 0 of the downsample list is the stem itself).
            if !scheme.isotropic && i >= 1 {
                let norm = NamingScheme.expand(scheme.downsampleNorm, i: i), conv = NamingScheme.expand(scheme.downsampleConv, i: i)
                layout.downsample[i] = (norm, conv)
                need(norm)
                need(conv)
            }
            for p in blocks {
                for part in [scheme.depthwise, scheme.norm, scheme.fc1, scheme.fc2] { need(p + part) }
                if keys.contains(p + scheme.layerScale) { layout.expected.append(p + scheme.layerScale) }
                if let s = scheme.grnScale, let b = scheme.grnShift, keys.contains(p + s) || keys.contains(p + b) {
                    layout.expected += [p + s, p + b]
                }
            }
        }
        need(scheme.headNorm)
        need(scheme.headFC)

        let expected = Set(layout.expected)
        layout.missing = layout.expected.filter { !keys.contains($0) }
        layout.unknown = sd.names.filter { !expected.contains($0) }
        layout.explained = sd.names.count - layout.unknown.count
        return layout
    }

    /// Writes the graph node by node, taking the tensors it needs from the state dict.
    struct Builder {
        let tensors: [String: Tensor]
        var nodes: [Node] = []
        var initializers: [String: Tensor] = [:]

        init(tensors: [String: Tensor]) { self.tensors = tensors }

        // MARK: tensors

        /// A float tensor of the checkpoint, checked against the shapes it may have.
        func param(_ key: String, _ shapes: [[Int]]) throws -> Tensor {
            guard let t = tensors[key] else { throw CNXError("missing tensor '\(key)'") }
            guard t.dtype == .float32 else { throw CNXError("tensor '\(key)' holds \(t.dtype.name) values; a weight must be floating point") }
            guard shapes.isEmpty || shapes.contains(t.shape) else {
                throw CNXError("tensor '\(key)' has shape \(t.shape); expected \(shapes.map { "\($0)" }.joined(separator: " or "))")
            }
            return t
        }

        /// Adds a checkpoint tensor as an initializer under its own name.
        mutating func use(_ key: String, _ shapes: [[Int]], as shape: [Int]? = nil) throws -> String {
            let t = try param(key, shapes)
            initializers[key] = shape.map { t.reshaped($0) } ?? t
            return key
        }

        /// A pointwise layer's weight (out, in) or (out, in, 1, 1), transposed to (in, out) for
        /// MatMul. The copy replaces the source, whose mapped pages are given back at once.
        mutating func transposedWeight(_ key: String, out: Int, in inputs: Int) throws -> String {
            let t = try param(key, [[out, inputs], [out, inputs, 1, 1]])
            let result = Tensor(zeros: .float32, shape: [inputs, out])
            let src = t.floatPointer, dst = result.floatPointer
            let tile = 32
            for r0 in stride(from: 0, to: out, by: tile) {
                for c0 in stride(from: 0, to: inputs, by: tile) {
                    for r in r0..<min(r0 + tile, out) {
                        for c in c0..<min(c0 + tile, inputs) { dst[c * out + r] = src[r * inputs + c] }
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

        mutating func layerNorm(_ x: String, _ module: String, channels c: Int, _ name: String) throws -> String {
            let w = try use(module + ".weight", [[c]]), b = try use(module + ".bias", [[c]])
            return node(.layerNormalization, [x, w, b], name, ["axis": .int(-1), "epsilon": .float(layerNormEpsilon)])
        }

        /// LayerNorm over the channels of an NCHW tensor, as the exporters write it.
        mutating func channelsFirstLayerNorm(_ x: String, _ module: String, channels c: Int, _ name: String) throws -> String {
            let t = transpose(x, [0, 2, 3, 1], name + ".to_nhwc")
            let n = try layerNorm(t, module, channels: c, name + ".ln")
            return transpose(n, [0, 3, 1, 2], name)
        }

        /// A convolution with a square kernel; returns (output, out channels, kernel).
        mutating func conv(_ x: String, _ module: String, inChannels: Int, stride: Int?, padding: Int, group: Int = 1,
                           _ name: String) throws -> (String, Int, Int) {
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
                        guard kernel % 2 == 1 else { throw CNXError("tensor '\(m).weight': an overlapping stem needs odd kernels, found \(kernel)x\(kernel)") }
                        (x, c, _) = try conv(x, m, inChannels: c, stride: 2, padding: kernel / 2, "stem.conv\(k)")
                    }
                case .gelu:
                    x = node(.gelu, [x], "stem.act\(k)", ["approximate": .string("none")])
                case .norm(let m):
                    guard k == layout.stem.count - 1 else { throw CNXError("the stem's LayerNorm '\(m)' must come last") }
                    x = try channelsFirstLayerNorm(x, m, channels: c, "stem.norm")
                }
            }
            if !s.isotropic && layout.stem.last.map({ if case .norm = $0 { return false } else { return true } }) ?? true {
                throw CNXError("the stem (\(s.stem)) has no LayerNorm after its convolutions")
            }

            for (i, blocks) in layout.stages.enumerated() {
                if let ds = layout.downsample[i] {
                    let n = try channelsFirstLayerNorm(x, ds.norm, channels: c, "stages.\(i).downsample.norm")
                    (x, c, _) = try conv(n, ds.conv, inChannels: c, stride: nil, padding: 0, "stages.\(i).downsample.conv")
                }
                for (j, p) in blocks.enumerated() {
                    x = try block(x, prefix: p, channels: c, scheme: s, "stages.\(i).blocks.\(j)")
                }
            }

            // Head.
            let pooled = node(.globalAveragePool, [x], "head.pool")
            let normed = try channelsFirstLayerNorm(pooled, s.headNorm, channels: c, "head.norm")
            let flat = node(.flatten, [normed], "head.flatten", ["axis": .int(1)])
            let fc = try param(s.headFC + ".weight", [])
            guard fc.shape.count == 2, fc.shape[1] == c else {
                throw CNXError("tensor '\(s.headFC).weight' has shape \(fc.shape); expected (classes, \(c))")
            }
            let classes = fc.shape[0]
            let fw = try use(s.headFC + ".weight", [[classes, c]]), fb = try use(s.headFC + ".bias", [[classes]])
            nodes.append(Node(name: "head.fc", op: .gemm, inputs: [flat, fw, fb], outputs: ["logits"],
                              attributes: ["transB": .int(1), "alpha": .float(1), "beta": .float(1)]))

            let graph = Graph(
                inputs: [ValueInfo(name: "input", dtype: .float32, shape: [.symbol("batch"), .fixed(inChannels), .symbol("height"), .symbol("width")])],
                outputs: [ValueInfo(name: "logits", dtype: .float32, shape: [.symbol("batch"), .fixed(classes)])],
                nodes: nodes, initializers: initializers,
                metadata: ["format": format, "source": source, "producer": "state dict, \(s.name) naming",
                           "producer_version": "", "naming_scheme": s.name, "opset": "17"])
            try Verifier.verify(graph)
            return graph
        }

        /// One ConvNeXt block on an NCHW tensor of `c` channels.
        mutating func block(_ x: String, prefix p: String, channels c: Int, scheme s: NamingScheme, _ name: String) throws -> String {
            let dw = try param(p + s.depthwise + ".weight", [])
            guard dw.shape.count == 4, dw.shape[0] == c, dw.shape[1] == 1, dw.shape[2] == dw.shape[3], dw.shape[2] % 2 == 1 else {
                throw CNXError("tensor '\(p)\(s.depthwise).weight' has shape \(dw.shape); expected (\(c), 1, k, k) with k odd (a block of a stage with \(c) channels)")
            }
            let k = dw.shape[2]
            let (d, _, _) = try conv(x, p + s.depthwise, inChannels: c, stride: 1, padding: k / 2, group: c, name + ".dwconv")
            let t = transpose(d, [0, 2, 3, 1], name + ".to_nhwc")
            let n = try layerNorm(t, p + s.norm, channels: c, name + ".norm")
            let w1 = try param(p + s.fc1 + ".weight", [])
            guard w1.shape.count == 2 || w1.shape.count == 4, w1.shape.count > 1, w1.shape[1] == c else {
                throw CNXError("tensor '\(p)\(s.fc1).weight' has shape \(w1.shape); expected (hidden, \(c)) or (hidden, \(c), 1, 1)")
            }
            let hidden = w1.shape[0]
            let w1t = try transposedWeight(p + s.fc1 + ".weight", out: hidden, in: c)
            let b1 = try use(p + s.fc1 + ".bias", [[hidden]])
            let h = node(.add, [node(.matMul, [n, w1t], name + ".fc1"), b1], name + ".fc1.bias")
            var g = node(.gelu, [h], name + ".act", ["approximate": .string("none")])
            if let gs = s.grnScale, let gb = s.grnShift, tensors[p + gs] != nil || tensors[p + gb] != nil {
                g = try grn(g, scale: p + gs, shift: p + gb, channels: hidden, name + ".grn")
            }
            let w2t = try transposedWeight(p + s.fc2 + ".weight", out: c, in: hidden)
            let b2 = try use(p + s.fc2 + ".bias", [[c]])
            var o = node(.add, [node(.matMul, [g, w2t], name + ".fc2"), b2], name + ".fc2.bias")
            if tensors[p + s.layerScale] != nil {
                let ls = try use(p + s.layerScale, [[c], [c, 1, 1]], as: [c])
                o = node(.mul, [o, ls], name + ".layer_scale")
            }
            let back = transpose(o, [0, 3, 1, 2], name + ".to_nchw")
            return node(.add, [back, x], name)
        }

        /// ConvNeXt V2's GRN on a channels-last tensor, written out as the ONNX exporters do.
        mutating func grn(_ x: String, scale: String, shift: String, channels: Int, _ name: String) throws -> String {
            let gamma = try use(scale, [[channels], [1, 1, 1, channels]]), beta = try use(shift, [[channels], [1, 1, 1, channels]])
            let eps = name + ".eps"
            initializers[eps] = Tensor(floats: [grnEpsilon], shape: [])
            let gx = node(.reduceL2, [x], name + ".l2", ["axes": .ints([1, 2]), "keepdims": .int(1)])
            let mean = node(.reduceMean, [gx], name + ".mean", ["axes": .ints([-1]), "keepdims": .int(1)])
            let nx = node(.div, [gx, node(.add, [mean, eps], name + ".add_eps")], name + ".nx")
            let scaled = node(.mul, [node(.mul, [x, nx], name + ".x_nx"), gamma], name + ".gamma")
            return node(.add, [node(.add, [scaled, beta], name + ".beta"), x], name)
        }
    }
}

/// What a timm model-hub folder's `config.json` says about the weights beside it.
public struct TimmHubConfig: Sendable {
    /// The timm model name, e.g. `convnext_tiny`.
    public var architecture: String?
    /// The pretrained tag, e.g. `in12k_ft_in1k`.
    public var tag: String?
    public var numClasses: Int?
    /// [channels, height, width].
    public var inputSize: [Int]?
    public var interpolation: String?
    public var cropPct: Float?
    public var mean: [Float]?
    public var std: [Float]?
    /// One per class, in logit order: the label descriptions where given, else the label names.
    public var classNames: [String]?

    /// Reads `path`; returns nil when the JSON is not a timm config (no `architecture` and no
    /// `pretrained_cfg`).
    public static func read(path: String) throws -> TimmHubConfig? {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CNXError("\(path): cannot read (\(error.localizedDescription))")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CNXError("\(path): not a JSON object")
        }
        let cfg = object["pretrained_cfg"] as? [String: Any] ?? [:]
        guard object["architecture"] is String || object["pretrained_cfg"] is [String: Any] else { return nil }
        func ints(_ v: Any?) -> [Int]? { (v as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } }
        func floats(_ v: Any?) -> [Float]? { (v as? [Any])?.compactMap { ($0 as? NSNumber)?.floatValue } }
        var c = TimmHubConfig()
        c.architecture = object["architecture"] as? String ?? cfg["architecture"] as? String
        c.tag = cfg["tag"] as? String
        c.numClasses = (object["num_classes"] as? NSNumber)?.intValue ?? (cfg["num_classes"] as? NSNumber)?.intValue
        c.inputSize = ints(cfg["input_size"]).flatMap { $0.count == 3 ? $0 : nil }
        c.interpolation = cfg["interpolation"] as? String
        c.cropPct = (cfg["crop_pct"] as? NSNumber)?.floatValue
        c.mean = floats(cfg["mean"]).flatMap { $0.count == 3 ? $0 : nil }
        c.std = floats(cfg["std"]).flatMap { $0.count == 3 ? $0 : nil }
        var names: [String]?
        let rawNames = object["label_names"] ?? cfg["label_names"]
        if let list = rawNames as? [Any] {
            names = list.map { "\($0)" }
        } else if let dict = rawNames as? [String: Any] {
            // {"0": "name", ...}: ids must run from 0 without gaps.
            let pairs = dict.compactMap { k, v in Int(k).map { ($0, "\(v)") } }.sorted { $0.0 < $1.0 }
            if pairs.count == dict.count, pairs.enumerated().allSatisfy({ $0.offset == $0.element.0 }) { names = pairs.map(\.1) }
        }
        if let n = names, let descriptions = (object["label_descriptions"] ?? cfg["label_descriptions"]) as? [String: Any] {
            names = n.map { descriptions[$0] as? String ?? $0 }
        }
        c.classNames = names
        return c
    }
}

/// The error with control characters escaped (a newline as `\n`): key names come from the file
/// and may hold anything, but a message stays one line that cannot drive a terminal.
func oneLine(_ e: CNXError) -> CNXError {
    let escaped = e.message.unicodeScalars.map { s -> String in
        s.value < 0x20 || (0x7F...0x9F).contains(s.value) ? s.escaped(asASCII: false) : String(s)
    }
    return CNXError(escaped.joined())
}

/// A checkpoint read into a graph.
public struct Checkpoint {
    public var graph: Graph
    /// "safetensors" or "pth".
    public var format: String
    public var scheme: NamingScheme
    /// The timm hub config found with the weights, if any.
    public var config: TimmHubConfig?
    /// The file the weights came from (inside the folder, for a hub folder).
    public var weightsPath: String
}

/// Reads a checkpoint of any kind this project knows into a graph: a `.safetensors` file, a
/// PyTorch zip (`.pth`, `.pt`, `.bin`), or a folder holding `model.safetensors` (or
/// `pytorch_model.bin`) and, for a timm hub folder, `config.json`. A `config.json` beside a
/// weights file is read too.
public enum CheckpointReader {
    public enum Kind: String { case safetensors, pth }

    /// The weights file of `path`: itself, or the one inside a folder.
    public static func weightsFile(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CNXError("\(path): no such file or folder") }
        guard isDirectory.boolValue else { return path }
        for name in ["model.safetensors", "pytorch_model.bin", "model.pth", "model.pt"] {
            let p = URL(fileURLWithPath: path).appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CNXError("\(path): a folder without model.safetensors or pytorch_model.bin")
    }

    /// Loads `path` as `kind` (a folder: by the weights file found in it).
    public static func load(path: String, kind: Kind) throws -> Checkpoint {
        let weights = try weightsFile(path)
        let configPath = URL(fileURLWithPath: weights).deletingLastPathComponent().appendingPathComponent("config.json").path
        var config: TimmHubConfig?
        if FileManager.default.fileExists(atPath: configPath) { config = try TimmHubConfig.read(path: configPath) }
        let stateDict = kind == .safetensors ? try SafetensorsReader.load(path: weights) : try TorchCheckpoint.load(path: weights)
        let name = URL(fileURLWithPath: weights).lastPathComponent
        let built: (graph: Graph, scheme: NamingScheme)
        do {
            built = try StateDictGraph.build(stateDict, format: kind.rawValue, source: name)
        } catch let e as CNXError {
            throw oneLine(e.inFile(weights))
        }
        if let config {
            let classes = built.graph.outputs.first?.shape?.last?.value
            if let n = config.numClasses, let classes, n != classes {
                throw CNXError("\(configPath): num_classes is \(n) but the weights in \(name) have \(classes) classes")
            }
            if let names = config.classNames, let classes, names.count != classes {
                throw CNXError("\(configPath): \(names.count) label names for \(classes) classes")
            }
        }
        return Checkpoint(graph: built.graph, format: kind.rawValue, scheme: built.scheme, config: config, weightsPath: weights)
    }
}
