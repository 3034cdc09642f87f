/// One of timm's registered ConvNeXt variants: its structure, which the weights show, and the
/// values they do not carry. The table itself (`TimmVariant.all`) is generated from timm by
/// `Fixtures/make_checkpoints.py --variant-table` into TimmVariantTable.swift.
@dynamicMemberLookup
struct TimmVariant {
    let name: String
    let structure: WeightFacts.Structure
    let norm: NormKind
    let eps: Float
    let activation: Activation
    let headActivation: Activation
    let grnEps: Float

    /// One row of the generated table: the structure's fields, then the values the weights do
    /// not carry.
    init(
        name: String, depths: [Int], dims: [Int], kernels: [Int], convMLP: Bool, grn: Bool, layerScale: Bool,
        stem: WeightFacts.Stem, head: WeightFacts.Head, norm: NormKind, eps: Float, activation: Activation,
        headActivation: Activation, grnEps: Float
    ) {
        self.name = name
        structure = .init(
            depths: depths, dims: dims, kernels: kernels, convMLP: convMLP, grn: grn, layerScale: layerScale, stem: stem, head: head)
        (self.norm, self.eps, self.activation, self.headActivation, self.grnEps) = (norm, eps, activation, headActivation, grnEps)
    }

    subscript<T>(dynamicMember path: KeyPath<WeightFacts.Structure, T>) -> T { structure[keyPath: path] }

    static func named(_ name: String) -> TimmVariant? { all.first { $0.name == name } }

    /// Everything the weights show matches: depths, widths, kernels, the MLP's form, GRN, layer
    /// scale, the stem, the head, and whether the norms have a bias. (Whether the model has a
    /// classifier is not compared: any variant may be built with `num_classes=0`.)
    func matchesExactly(_ f: WeightFacts) -> Bool {
        matchesDepthsAndWidths(f) && structure == f.structure
    }

    /// Depths and widths match, and so do what no build option changes: GRN (V1 or V2) and
    /// whether the norms have a bias (LayerNorm, or RMS / simple norm).
    func matchesDepthsAndWidths(_ f: WeightFacts) -> Bool {
        self.depths == f.depths && self.dims == f.dims && self.grn == f.grn && norm.hasBias == f.normHasBias
    }

    func proposal(source: String) -> Proposal {
        Proposal(
            source: source, norm: norm, eps: Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, eps) }),
            activation: activation, headActivation: headActivation, grnEps: grnEps)
    }

    /// The variants the weights match: all that match exactly, else all that match by depths
    /// and widths, with the phrase that says how they were matched.
    static func candidates(for f: WeightFacts) -> (variants: [TimmVariant], source: String) {
        let exact = all.filter { $0.matchesExactly(f) }
        if !exact.isEmpty {
            return (exact, "timm \(exact.map(\.name).joined(separator: ", ")), matched by depths and widths")
        }
        let loose = all.filter { $0.matchesDepthsAndWidths(f) }
        return (loose, "timm \(loose.map(\.name).joined(separator: ", ")), matched by depths and widths; its kernels, stem or head differ")
    }
}
