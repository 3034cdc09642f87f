/// One of timm's registered ConvNeXt variants: its structure, which the weights show, and the
/// values they do not carry. The table itself (`TimmVariant.all`) is generated from timm by
/// `Fixtures/make_checkpoints.py --variant-table` into TimmVariantTable.swift.
struct TimmVariant {
    let name: String
    let depths: [Int]
    let dims: [Int]
    let kernels: [Int]
    let convMLP: Bool
    let grn: Bool
    let layerScale: Bool
    let stem: WeightFacts.Stem
    let head: WeightFacts.Head
    let norm: NormKind
    let eps: Float
    let activation: Activation
    let headActivation: Activation
    let grnEps: Float

    static func named(_ name: String) -> TimmVariant? { all.first { $0.name == name } }

    /// Everything the weights show matches: depths, widths, kernels, the MLP's form, GRN, layer
    /// scale, the stem, the head, and whether the norms have a bias. (Whether the model has a
    /// classifier is not compared: any variant may be built with `num_classes=0`.)
    func matchesExactly(_ f: WeightFacts) -> Bool {
        matchesDepthsAndWidths(f) && kernels == f.kernels && convMLP == f.convMLP && grn == f.grn
            && layerScale == f.layerScale && stem == f.stem && head == f.head
    }

    /// Depths and widths match, and so do what no build option changes: GRN (V1 or V2) and
    /// whether the norms have a bias (LayerNorm, or RMS / simple norm).
    func matchesDepthsAndWidths(_ f: WeightFacts) -> Bool {
        depths == f.depths && dims == f.dims && grn == f.grn && norm.hasBias == f.normHasBias
    }

    func proposal(source: String) -> Proposal {
        Proposal(source: source, norm: norm, eps: Dictionary(uniqueKeysWithValues: NormSite.allCases.map { ($0, eps) }),
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
