import CNXGraph

/// Removes every GRN whose gamma and beta are all zero: y = 0 * (x * Nx) + 0 + x is x (Nx is
/// finite: the epsilon keeps its denominator positive). ConvNeXt V2 initialises GRN this way, so
/// a freshly built or partly trained model has whole blocks of them; without this pass the chain
/// still computes statistics over the whole map for nothing, and a block without it fuses like
/// a V1 block with no layer scale.
public struct DropIdentityGRN: Pass {
    public let name = "drop-identity-grn"
    public let summary = "GRN with zero gamma and beta (the identity) -> nothing"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in dropOne(&g) }
    }

    private func dropOne(_ g: inout Graph) -> Bool {
        let outputs = Set(g.outputs.map(\.name))
        for (i, grn) in g.nodes.enumerated() where grn.op == .grn && grn.inputs.count == 3 && !outputs.contains(grn.outputs[0]) {
            guard let gamma = g.initializers[grn.inputs[1]], gamma.dtype == .float32, gamma.floats.allSatisfy({ $0 == 0 }),
                let beta = g.initializers[grn.inputs[2]], beta.dtype == .float32, beta.floats.allSatisfy({ $0 == 0 })
            else { continue }
            g.replace([i], with: [])
            g.rewire(grn.outputs[0], to: grn.inputs[0])
            return true
        }
        return false
    }
}
