import CNXGraph

/// Folds ConvNeXt V2's global response normalisation, written out on a channels-last tensor as
/// `Gx = ReduceL2(x, H and W); Nx = Gx / (ReduceMean(Gx, C) + eps); y = gamma * (x * Nx) + beta + x`,
/// into one `cnx.GRN` node. The additions and products may come in either operand order.
public struct FoldGRN: Pass {
    public let name = "fold-grn"
    public let summary = "GRN chains of ConvNeXt V2 (channels-last) -> cnx.GRN"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in foldOne(&g) }
    }

    private func axes(_ node: Node, _ index: GraphIndex, rank: Int) -> Set<Int>? {
        let raw: [Int]?
        if node.inputs.count > 1 {
            raw = index.constant(node.inputs[1]).flatMap { $0.dtype == .int64 ? $0.int64s.map { Int($0) } : nil }
        } else {
            raw = node.ints("axes")
        }
        return raw.map { Set($0.map { $0 < 0 ? $0 + rank : $0 }) }
    }

    private func foldOne(_ g: inout Graph) -> Bool {
        let index = GraphIndex(g)
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, l2) in g.nodes.enumerated() where l2.op == .reduceL2 {
            let x = l2.inputs[0], gx = l2.outputs[0]
            guard let shape = facts[x]?.shape, shape.count == 4, let channels = shape[3].value,
                  axes(l2, index, rank: 4) == [1, 2], (l2.int("keepdims") ?? 1) == 1,
                  let gxReaders = index.consumers[gx], gxReaders.count == 2, !index.graphOutputs.contains(gx) else { continue }
            let readers = gxReaders.map { (index: $0, node: g.nodes[$0]) }
            guard let mean = readers.first(where: { $0.node.op == .reduceMean }), axes(mean.node, index, rank: 4) == [3],
                  (mean.node.int("keepdims") ?? 1) == 1,
                  let div = readers.first(where: { $0.node.op == .div }), div.node.inputs.first == gx,
                  let addEps = index.soleConsumer(mean.node.outputs[0], .add),
                  let epsName = index.other(addEps.node, than: mean.node.outputs[0]), let eps = index.scalar(epsName),
                  div.node.inputs[1] == addEps.node.outputs[0], index.soleConsumer(addEps.node.outputs[0]) != nil,
                  let scaleX = index.soleConsumer(div.node.outputs[0], .mul), index.other(scaleX.node, than: div.node.outputs[0]) == x,
                  let mulGamma = index.soleConsumer(scaleX.node.outputs[0], .mul),
                  let gammaName = index.other(mulGamma.node, than: scaleX.node.outputs[0]),
                  let addBeta = index.soleConsumer(mulGamma.node.outputs[0], .add),
                  let betaName = index.other(addBeta.node, than: mulGamma.node.outputs[0]),
                  let residual = index.soleConsumer(addBeta.node.outputs[0], .add),
                  index.other(residual.node, than: addBeta.node.outputs[0]) == x,
                  let gamma = index.constant(gammaName)?.vector(of: channels), let beta = index.constant(betaName)?.vector(of: channels),
                  index.constant(gammaName)?.shape.last == channels, index.constant(betaName)?.shape.last == channels else { continue }
            let out = residual.node.outputs[0]
            let gName = g.freshName("\(out).grn_gamma"), bName = g.freshName("\(out).grn_beta")
            g.replace([i, mean.index, addEps.index, div.index, scaleX.index, mulGamma.index, addBeta.index, residual.index],
                      with: [Node(name: l2.name, op: .grn, inputs: [x, gName, bName], outputs: [out], attributes: ["grn_epsilon": .float(eps)])],
                      adding: [gName: Tensor(floats: gamma, shape: [channels]), bName: Tensor(floats: beta, shape: [channels])])
            return true
        }
        return false
    }
}
