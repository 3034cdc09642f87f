import CNXFormat
import CNXGraph
import Foundation

/// The normalisation a ConvNeXt's norms compute (weights cannot tell RMS from simple norm).
///
/// - `layernorm`: (x - mean) / sqrt(var + eps) * w + b, the biased variance over the channels;
/// - `rmsnorm` (timm `RmsNorm2d`, `RmsNorm`): x / sqrt(mean(x^2) + eps) * w, no bias;
/// - `simplenorm` (timm `SimpleNorm2d`, `SimpleNorm`): x / sqrt(var + eps) * w with the
///   unbiased (n - 1) variance and x not centred, no bias.
public enum NormKind: String, CaseIterable, Sendable {
    case layerNorm = "layernorm", rmsNorm = "rmsnorm", simpleNorm = "simplenorm"

    /// A LayerNorm has a bias; the others have none.
    public var hasBias: Bool { self == .layerNorm }

    /// timm's `norm_layer` names (`_NORM_MAP` in timm/models/convnext.py).
    public init?(timmName: String) {
        switch timmName {
        case "layernorm", "layernorm2d": self = .layerNorm
        case "rmsnorm", "rmsnorm2d": self = .rmsNorm
        case "simplenorm", "simplenorm2d": self = .simpleNorm
        default: return nil
        }
    }
}

/// The activation of the blocks' MLP (and of timm's overlap_act stem and MLP head).
public enum Activation: String, CaseIterable, Sendable {
    /// GELU with erf (PyTorch's default `nn.GELU()`).
    case gelu
    /// GELU's tanh approximation (`nn.GELU(approximate='tanh')`, timm `gelu_tanh`).
    case geluTanh = "gelu_tanh"
    /// x * sigmoid(x) (timm `silu` / `swish`).
    case silu

    /// timm's `act_layer` names that a ConvNeXt can use.
    public init?(timmName: String) {
        switch timmName {
        case "gelu": self = .gelu
        case "gelu_tanh": self = .geluTanh
        case "silu", "swish": self = .silu
        default: return nil
        }
    }

    /// transformers' `hidden_act` names (`ACT2FN`) with one of these three meanings: `gelu_new`,
    /// `gelu_fast`, `gelu_accurate`, `gelu_python_tanh` and `gelu_pytorch_tanh` are the tanh
    /// approximation written five ways (within 2.4e-7 of each other on [-6, 6]).
    public init?(transformersName: String) {
        switch transformersName {
        case "gelu", "gelu_python": self = .gelu
        case "gelu_new", "gelu_fast", "gelu_accurate", "gelu_python_tanh", "gelu_pytorch_tanh": self = .geluTanh
        case "silu", "swish": self = .silu
        default: return nil
        }
    }
}

/// Where a norm sits; the epsilon may differ between them (transformers' pooled norm does).
public enum NormSite: String, CaseIterable, Sendable, Comparable {
    case stem, downsample, block
    /// The head's norm: after pooling, or timm's `norm_pre` before it.
    case head
    /// transformers' backbone norms on the stage outputs.
    case features

    public static func < (a: NormSite, b: NormSite) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A value that the weights do not carry, the value the reader used, and where it came from.
public struct Assumption: Equatable, Sendable {
    /// `norm`, `eps` (every norm) or `eps.<site>`, `activation`, `head_activation`, `grn_eps`.
    public var name: String
    public var value: String
    public var source: String

    /// "eps 1e-5 (timm convnext_xxlarge, matched by depths and widths)".
    public var description: String { "\(name.replacingOccurrences(of: ".", with: " ")) \(value) (\(source))" }
    /// The `.cnx` metadata key that records it.
    public var metadataKey: String { MetadataKey.assumedPrefix + name }
    /// The metadata value: the value, then its source in parentheses.
    public var metadataValue: String { "\(value) (\(source))" }
}

/// What the user said on the command line about values the weights do not carry.
public struct CheckpointOptions: Sendable {
    /// `--layer-norm-eps`: for every norm, or per site.
    public var layerNormEps: [NormSite: Float] = [:]
    /// `--activation`.
    public var activation: Activation?
    /// `--norm`.
    public var norm: NormKind?

    public init(layerNormEps: [NormSite: Float] = [:], activation: Activation? = nil, norm: NormKind? = nil) {
        self.layerNormEps = layerNormEps
        self.activation = activation
        self.norm = norm
    }

    /// `--layer-norm-eps` as written: one number for every norm (`1e-5`), or `site=number`
    /// pairs separated by commas (`head=1e-12,block=1e-6`), sites being stem, downsample,
    /// block, head, features.
    public static func parseEps(_ text: String) throws -> [NormSite: Float] {
        func number(_ s: Substring) throws -> Float {
            let t = s.trimmingCharacters(in: .whitespaces)
            guard let v = Float(t), v.isFinite, v > 0 else {
                throw CNXError("--layer-norm-eps: '\(t)' is not a positive number")
            }
            return v
        }
        if !text.contains("=") {
            let v = try number(Substring(text))
            return Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, v) })
        }
        var out: [NormSite: Float] = [:]
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            let key = kv.first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard kv.count == 2, let site = NormSite(rawValue: key) else {
                throw CNXError(
                    "--layer-norm-eps: '\(part)' is not site=number (sites: \(NormSite.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            out[site] = try number(kv[1])
        }
        return out
    }
}

/// Writes an epsilon the way people write it: 1e-5, 1e-12, 2.5e-6.
func formatEps(_ v: Float) -> String {
    var s = String(format: "%g", Double(v))
    // %g writes 1e-05: drop the exponent's leading zero.
    if let e = s.range(of: "e-0") { s.replaceSubrange(e, with: "e-") }
    if let e = s.range(of: "e+0") { s.replaceSubrange(e, with: "e+") }
    return s
}

/// The values a state dict's weights do not carry, resolved for one checkpoint.
public struct Hyperparameters: Sendable {
    public var norm: NormKind
    public var eps: [NormSite: Float]
    public var activation: Activation
    public var headActivation: Activation
    public var grnEps: Float
    /// Each value above that the graph uses, with where it came from.
    public var assumptions: [Assumption]

    func eps(_ site: NormSite) -> Float { eps[site] ?? 1e-6 }
}

/// What the weights show about a ConvNeXt, beyond its parameters' values: what the
/// hyperparameters are matched against.
@dynamicMemberLookup
struct WeightFacts {
    enum Stem: String { case patch, overlap, overlapTiered = "overlap_tiered", overlapAct = "overlap_act", none }
    enum Head: Equatable { case poolNormFC, normFirst, mlp(hidden: Int), features }

    /// The network's form: what a timm variant is matched by (`f.depths` reads it).
    struct Structure: Equatable {
        var depths: [Int]
        var dims: [Int]
        var kernels: [Int]
        var convMLP: Bool
        var grn: Bool
        var layerScale: Bool
        var stem: Stem
        var head: Head
    }

    var scheme: NamingScheme
    var structure: Structure
    var normHasBias: Bool
    /// The norm sites the network has.
    var sites: Set<NormSite>

    init(
        scheme: NamingScheme, depths: [Int], dims: [Int], kernels: [Int], convMLP: Bool, grn: Bool, layerScale: Bool,
        stem: Stem, head: Head, normHasBias: Bool, sites: Set<NormSite>
    ) {
        self.scheme = scheme
        structure = Structure(
            depths: depths, dims: dims, kernels: kernels, convMLP: convMLP, grn: grn, layerScale: layerScale, stem: stem, head: head)
        self.normHasBias = normHasBias
        self.sites = sites
    }

    subscript<T>(dynamicMember path: WritableKeyPath<Structure, T>) -> T {
        get { structure[keyPath: path] }
        set { structure[keyPath: path] = newValue }
    }

    var description: String { "depths \(structure.depths), widths \(structure.dims)" }
}

/// One source's say on each hyperparameter (nil: it says nothing), and how to name it.
struct Proposal {
    var source: String
    var norm: NormKind?
    var eps: [NormSite: Float] = [:]
    var activation: Activation?
    var headActivation: Activation?
    var grnEps: Float?
    /// The sources of single values, where they differ from `source` (config.json keys).
    var sources: [String: String] = [:]

    /// The source of one value: `eps.head` falls back to `eps`, then to the proposal's source.
    func source(of name: String) -> String {
        if let s = sources[name] { return s }
        if let dot = name.firstIndex(of: "."), let s = sources[String(name[..<dot])] { return s }
        return source
    }
}

/// Resolves the hyperparameters, for each value taking the first of: the command-line flags,
/// the checkpoint's own configuration, the known variants whose structure the weights match
/// (all of them must agree; else the reader refuses and names the flag that chooses), the
/// naming scheme's default. Every value used is recorded with its source.
enum HyperparameterResolver {
    /// The layers, highest priority first. `candidates` are the matched known variants: each one
    /// a proposal; they count only where they all agree.
    struct Layers {
        var flags: Proposal
        var config: Proposal?
        var candidates: [(name: String, proposal: Proposal)] = []
        var candidateSource: String = ""
        var defaults: Proposal
    }

    static func resolve(_ facts: WeightFacts, _ layers: Layers) throws -> Hyperparameters {
        var assumptions: [Assumption] = []

        /// The first layer that has a value for `pick`; candidates only when they agree.
        func choose<T: Equatable>(
            _ name: String, key: String? = nil, flag: String, render: (T) -> String,
            _ pick: (Proposal) -> T?
        ) throws -> (T, String)? {
            let key = key ?? name
            if let v = pick(layers.flags) { return (v, layers.flags.source(of: key)) }
            if let c = layers.config, let v = pick(c) { return (v, c.source(of: key)) }
            let values = layers.candidates.compactMap { c in pick(c.proposal).map { (c.name, $0) } }
            if !values.isEmpty {
                if values.allSatisfy({ $0.1 == values[0].1 }) { return (values[0].1, layers.candidateSource) }
                let listed = values.map { "\($0.0) (\(name) \(render($0.1)))" }
                var distinct: [String] = []
                for v in values.map({ render($0.1) }) where !distinct.contains(v) { distinct.append(v) }
                throw CNXError(
                    "the weights (\(facts.description)) fit the timm variants \(listed.joined(separator: ", ")), which differ in \(name), and nothing says which; choose with \(flag) \(distinct.joined(separator: "|"))"
                )
            }
            if let v = pick(layers.defaults) { return (v, layers.defaults.source(of: key)) }
            return nil
        }

        // The norm kind: a LayerNorm has a bias, RMS and simple norms have none.
        let norm: NormKind
        if facts.normHasBias {
            if let f = layers.flags.norm, f != .layerNorm {
                throw CNXError("--norm \(f.rawValue): the checkpoint's norms have a bias, which only a LayerNorm has")
            }
            let configured = layers.config?.norm
            if let c = configured, c != .layerNorm {
                throw CNXError(
                    "\(layers.config?.source(of: "norm") ?? "the configuration") says \(c.rawValue), but the checkpoint's norms have a bias, which only a LayerNorm has"
                )
            }
            norm = .layerNorm
            assumptions.append(
                Assumption(
                    name: "norm", value: norm.rawValue,
                    source: layers.flags.norm != nil ? "--norm" : "the norms have a weight and a bias"))
        } else {
            if layers.flags.norm == .layerNorm || layers.config?.norm == .layerNorm {
                throw CNXError(
                    "\(layers.flags.norm == .layerNorm ? "--norm layernorm" : layers.config?.source(of: "norm") ?? ""): a LayerNorm has a bias, but the checkpoint's norms have none"
                )
            }
            guard let (kind, source) = try choose("norm", flag: "--norm", render: { (k: NormKind) in k.rawValue }, { $0.norm }),
                kind != .layerNorm
            else {
                throw CNXError(
                    "the norms have no bias: an RMS norm (timm rmsnorm2d) or a simple norm (timm simplenorm), and nothing says which; choose with --norm rmsnorm|simplenorm"
                )
            }
            norm = kind
            assumptions.append(Assumption(name: "norm", value: kind.rawValue, source: source))
        }

        // Epsilon, per site.
        var eps: [NormSite: Float] = [:]
        var epsSources: [NormSite: String] = [:]
        for site in facts.sites.sorted() {
            guard
                let (v, source) = try choose(
                    "eps", key: "eps.\(site.rawValue)", flag: "--layer-norm-eps", render: formatEps, { $0.eps[site] })
            else {
                throw CNXError("no epsilon for the \(site.rawValue) norm; give one with --layer-norm-eps")
            }
            eps[site] = v
            epsSources[site] = source
        }
        // One line for the blocks' epsilon and every site that shares it (value and source),
        // one line per other site: `eps 1e-6 (...)`, `eps.head 1e-12 (...)`.
        let sites = facts.sites.sorted()
        let same = { (s: NormSite) in eps[s] == eps[.block] && epsSources[s] == epsSources[.block] }
        if let v = eps[.block], let source = epsSources[.block] {
            assumptions.append(Assumption(name: "eps", value: formatEps(v), source: source))
        }
        for site in sites where !same(site) {
            assumptions.append(Assumption(name: "eps.\(site.rawValue)", value: formatEps(eps[site]!), source: epsSources[site]!))
        }

        guard
            let (activation, actSource) = try choose(
                "activation", flag: "--activation", render: { (a: Activation) in a.rawValue }, { $0.activation })
        else {
            throw CNXError(
                "nothing says which activation the blocks use; choose with --activation \(Activation.allCases.map(\.rawValue).joined(separator: "|"))"
            )
        }
        assumptions.append(Assumption(name: "activation", value: activation.rawValue, source: actSource))

        var headActivation = Activation.gelu
        if case .mlp = facts.head {
            guard
                let (a, source) = try choose(
                    "head_activation", flag: "--activation", render: { (a: Activation) in a.rawValue }, { $0.headActivation })
            else {
                throw CNXError("nothing says which activation the head's hidden layer uses")
            }
            headActivation = a
            assumptions.append(Assumption(name: "head_activation", value: a.rawValue, source: source))
        }

        var grnEps: Float = 1e-6
        if facts.grn {
            guard let (v, source) = try choose("grn_eps", flag: "(no flag)", render: formatEps, { $0.grnEps }) else {
                throw CNXError("nothing says GRN's epsilon")
            }
            grnEps = v
            assumptions.append(Assumption(name: "grn_eps", value: formatEps(v), source: source))
        }
        return Hyperparameters(
            norm: norm, eps: eps, activation: activation, headActivation: headActivation,
            grnEps: grnEps, assumptions: assumptions)
    }
}
