/// Dead-code removal: a graph utility that the passes and the int8 lowering both use.
extension Graph {
    /// Drops nodes whose results nobody reads and tensors no node reads. Returns how many nodes went.
    @discardableResult
    public mutating func removeDeadCode() -> Int {
        var live = Set(outputs.map(\.name))
        var keep = [Bool](repeating: false, count: nodes.count)
        for i in stride(from: nodes.count - 1, through: 0, by: -1) where nodes[i].outputs.contains(where: { live.contains($0) }) {
            keep[i] = true
            live.formUnion(nodes[i].inputs)
        }
        let before = nodes.count
        nodes = nodes.indices.filter { keep[$0] }.map { nodes[$0] }
        initializers = initializers.filter { live.contains($0.key) }
        return before - nodes.count
    }
}
