import CNXGraph

/// A read-only index over a graph: who writes each value, who reads it, which are constants.
/// Passes look at the graph through it and rewrite with `Graph.replace`.
public struct GraphIndex {
    let graph: Graph
    let producers: [String: Int]
    let consumers: [String: [Int]]
    let graphOutputs: Set<String>

    init(_ graph: Graph) {
        self.graph = graph
        producers = graph.producers()
        consumers = graph.consumers()
        graphOutputs = Set(graph.outputs.map(\.name))
    }

    /// The node that writes `value`, with its index.
    func producer(_ value: String) -> (index: Int, node: Node)? {
        guard let i = producers[value] else { return nil }
        return (i, graph.nodes[i])
    }

    /// Producer of `value` when it is an `op` node.
    func producer(_ value: String, _ op: OpType) -> (index: Int, node: Node)? {
        guard let p = producer(value), p.node.op == op else { return nil }
        return p
    }

    /// The one node reading `value`, when exactly one does and the value is not a graph output:
    /// only then may a rewrite make the value disappear.
    func soleConsumer(_ value: String) -> (index: Int, node: Node)? {
        guard !graphOutputs.contains(value), let c = consumers[value], c.count == 1 else { return nil }
        return (c[0], graph.nodes[c[0]])
    }

    func soleConsumer(_ value: String, _ op: OpType) -> (index: Int, node: Node)? {
        guard let c = soleConsumer(value), c.node.op == op else { return nil }
        return c
    }

    func readers(_ value: String) -> Int { (consumers[value]?.count ?? 0) + (graphOutputs.contains(value) ? 1 : 0) }

    func constant(_ value: String) -> Tensor? { graph.initializers[value] }

    /// A constant holding one number (any rank), as Float.
    func scalar(_ value: String) -> Float? {
        guard let t = graph.initializers[value], t.count == 1 else { return nil }
        switch t.dtype {
        case .float32: return t.withUnsafeFloats { $0[0] }
        case .int64: return Float(t.withUnsafeInt64s { $0[0] })
        default: return nil
        }
    }

    /// For a binary node with one constant input: (the other input, the constant's name).
    func splitConstant(_ node: Node) -> (value: String, constant: String)? {
        guard node.inputs.count == 2 else { return nil }
        let (a, b) = (node.inputs[0], node.inputs[1])
        if graph.initializers[b] != nil && graph.initializers[a] == nil { return (a, b) }
        if graph.initializers[a] != nil && graph.initializers[b] == nil { return (b, a) }
        return nil
    }

    /// For a commutative binary node, the other input when one input is `value`.
    func other(_ node: Node, than value: String) -> String? {
        guard node.inputs.count == 2 else { return nil }
        if node.inputs[0] == value { return node.inputs[1] }
        if node.inputs[1] == value { return node.inputs[0] }
        return nil
    }
}

/// True when |a - b| <= tolerance * max(1, |b|): constants in exports are float32 roundings.
func close(_ a: Float?, _ b: Float, tolerance: Float = 1e-5) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= tolerance * max(1, abs(b))
}

extension Graph {
    /// A value or tensor name not yet used in the graph, starting from `base`.
    func freshName(_ base: String) -> String {
        var used = Set(initializers.keys)
        for n in nodes { used.formUnion(n.outputs) }
        for v in inputs { used.insert(v.name) }
        if !used.contains(base) { return base }
        var i = 1
        while used.contains("\(base).\(i)") { i += 1 }
        return "\(base).\(i)"
    }

    /// Removes the nodes at `indices` and puts `replacement` where the last of them stood: every
    /// value the replacement reads is defined before that point and every reader of what it
    /// writes comes after it, as long as the removed nodes' inner values had no other readers.
    mutating func replace(_ indices: Set<Int>, with replacement: [Node], adding tensors: [String: Tensor] = [:]) {
        guard let last = indices.max() else { return }
        var out: [Node] = []
        out.reserveCapacity(nodes.count - indices.count + replacement.count)
        for (i, n) in nodes.enumerated() {
            if i == last { out.append(contentsOf: replacement) }
            if !indices.contains(i) { out.append(n) }
        }
        nodes = out
        for (k, v) in tensors { initializers[k] = v }
    }

    /// Makes every reader of `old` read `new` instead (graph outputs are renamed by keeping a
    /// node that writes the output's name, so outputs keep their names).
    mutating func rewire(_ old: String, to new: String) {
        for i in nodes.indices {
            for j in nodes[i].inputs.indices where nodes[i].inputs[j] == old { nodes[i].inputs[j] = new }
        }
    }
}

/// Transpose NCHW -> NHWC, as the passes write it in front of channels-last operations.
func toNHWC(_ name: String, _ input: String, _ output: String) -> Node {
    Node(name: "\(name).to_nhwc", op: .transpose, inputs: [input], outputs: [output], attributes: ["perm": .ints([0, 2, 3, 1])])
}

/// Transpose NHWC -> NCHW, after channels-last operations.
func toNCHW(_ name: String, _ input: String, _ output: String) -> Node {
    Node(name: "\(name).to_nchw", op: .transpose, inputs: [input], outputs: [output], attributes: ["perm": .ints([0, 3, 1, 2])])
}

extension Graph {
    /// An operation over the last axis applied to the channels (axis 1) of the NCHW value `x`:
    /// Transpose to NHWC, the operation (its other inputs `rest`), Transpose back into `output`.
    /// The transpose pass then cancels such pairs between neighbours.
    func channelsLast(_ name: String, _ op: OpType, _ x: String, _ rest: [String], attributes: [String: Attribute], output: String)
        -> [Node]
    {
        let nhwc = freshName("\(output).nhwc"), result = freshName("\(output).nhwc_\(op.rawValue)")
        return [
            toNHWC(name, x, nhwc),
            Node(name: name, op: op, inputs: [nhwc] + rest, outputs: [result], attributes: attributes),
            toNCHW(name, result, output),
        ]
    }

    /// Replaces the nodes `removed` by one operation over the last axis reading `x` and the
    /// per-channel `rest` (new `tensors`) into `output`: as it is when `x` is channels-last, or
    /// between transposes (`channelsLast`) when `x` is NCHW.
    mutating func replace(
        _ removed: Set<Int>, withChannelOp op: OpType, named name: String, _ x: String, _ rest: [String],
        attributes: [String: Attribute], output: String, channelsFirst: Bool, adding tensors: [String: Tensor]
    ) {
        let nodes =
            channelsFirst
            ? channelsLast(name, op, x, rest, attributes: attributes, output: output)
            : [Node(name: name, op: op, inputs: [x] + rest, outputs: [output], attributes: attributes)]
        replace(removed, with: nodes, adding: tensors)
    }
}

/// One optimisation pass: a rewrite applied until nothing matches.
public protocol Pass {
    /// The name `--dump-after` takes.
    var name: String { get }
    /// One line on what the pass does, for `--verbose` and the file's metadata.
    var summary: String { get }
    /// Rewrites `graph` and returns how many rewrites it made (0: the graph is unchanged).
    func run(_ graph: inout Graph) throws -> Int
}

/// A pass made of one rewrite at a time: `rewriteOnce` finds one match in the graph (seen
/// through a fresh index), rewrites it and returns true, or returns false when none is left.
/// Its `run` repeats it until the graph is stable, removing dead code after each rewrite.
public protocol RepeatedRewrite: Pass {
    func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool
}

extension RepeatedRewrite {
    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in rewriteOnce(&g, GraphIndex(g)) }
    }
}

/// Applies `rewriteOnce` until it returns false; the pass's count is the number of rewrites.
/// Dead nodes and tensors go after every rewrite, so a weight that a fold replaced is freed
/// at once and a large model is never held twice.
func repeatUntilStable(_ graph: inout Graph, _ rewriteOnce: (inout Graph) throws -> Bool) rethrows -> Int {
    var count = 0
    while try rewriteOnce(&graph) {
        count += 1
        graph.removeDeadCode()
        if count > 100_000 { break }
    }
    return count
}

/// Tensor helpers the folding arithmetic uses.
extension Tensor {
    /// A float32 copy with the given shape (same element count).
    func floatCopy(shape: [Int]? = nil) -> Tensor? {
        guard dtype == .float32 else { return nil }
        return Tensor(floats: floats, shape: shape ?? self.shape)
    }

    /// The float values when the tensor holds exactly `count` of them along one non-unit axis
    /// (shapes like [C], [1, 1, 1, C] or [C, 1, 1]).
    func vector(of count: Int) -> [Float]? {
        guard dtype == .float32, self.count == count, shape.filter({ $0 != 1 }).count <= 1 else { return nil }
        return floats
    }
}
