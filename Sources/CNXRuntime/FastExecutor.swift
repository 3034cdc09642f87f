import CKernels
import CReferenceKernels
import CNXGraph
import CNXReference
import Dispatch
import Foundation

/// A weight matrix [K, N] packed once, at load, into the GEMM kernel's panel layout.
final class PackedMatrix: @unchecked Sendable {
    let k: Int, n: Int
    let data: UnsafeMutablePointer<Float>

    init(_ t: Tensor) {
        k = t.shape[0]
        n = t.shape[1]
        let floats = cnx_gemm_packed_b_floats(Int64(k), Int64(n))
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(floats, 1) * 4, alignment: 64)
        data = raw.bindMemory(to: Float.self, capacity: max(floats, 1))
        let (k, n, data) = (self.k, self.n, self.data)
        t.withUnsafeFloats { cnx_gemm_pack_b($0.baseAddress, Int64(k), Int64(n), data) }
    }

    deinit { data.deallocate() }

    /// c[:, columns] = residual + act(a · self + bias) (ColumnGEMM).
    func multiply(
        _ a: UnsafePointer<Float>, rows: Int, lda: Int, columns: Range<Int>, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let j0 = columns.lowerBound
        cnx_gemm_f32(
            Int64(rows), Int64(columns.count), Int64(k), a, Int64(lda), data + j0 * k, bias.map { $0 + j0 }, act, residual.map { $0 + j0 },
            Int64(ldr), c + j0, Int64(ldc))
    }
}

/// A packed float32 or half-precision weight [K, N] that the GEMM multiplies by, whole or over a
/// range of its output columns (to split a layer with few rows, a small map, across threads).
protocol ColumnGEMM {
    var n: Int { get }
    /// c[:, columns] = residual + act(a[m x k] · W + bias) over `columns` (starting at a multiple
    /// of 32, the panel width), act a CNX_ACT_* code; bias, residual and c are the whole
    /// matrices' (indexed from column 0).
    func multiply(
        _ a: UnsafePointer<Float>, rows: Int, lda: Int, columns: Range<Int>, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>, ldc: Int)
}

extension ColumnGEMM {
    /// c[m x n] = residual + act(a[m x k] · W + bias), act a CNX_ACT_* code.
    func multiply(
        _ a: UnsafePointer<Float>, rows: Int, lda: Int, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        multiply(a, rows: rows, lda: lda, columns: 0..<n, bias: bias, act: act, residual: residual, ldr: ldr, into: c, ldc: ldc)
    }
}

extension PackedMatrix: ColumnGEMM {}
extension PackedHalfMatrix: ColumnGEMM {}

extension LayerWeights {
    /// The float32 or half-precision weight, for a split by columns; nil for int8.
    var columnGEMM: ColumnGEMM? {
        switch self {
        case .float(let m): return m
        case .half(let h): return h
        case .int8: return nil
        }
    }
}

/// Sees the activations that enter the GEMMs of fused operations, for calibration. `observe`
/// is called from several threads at once, each time with a slice of rows of one activation.
/// In a block, layer 1 is the norm's output (input of the first pointwise layer) and layer 2
/// the activation's (or GRN's) output (input of the second); the stem's and downsample's one
/// GEMM is layer 1 (its patches); the head's first layer is layer 1 (the pooled, normalised
/// features) and an MLP head's classifier layer 2 (the hidden activation).
public protocol ActivationObserver: AnyObject {
    func observe(node: Int, layer: Int, values: UnsafeBufferPointer<Float>)
}

/// One section of `parallelChunks` or `parallelGuided`, as the pool's C callback sees it: chunk
/// i covers items bounds[i]..<bounds[i + 1].
private struct PoolSection {
    let bounds: UnsafePointer<Int>
    let body: (Int, Int, Int) -> Void
}

/// Runs `body(start, end, lane)` over `count` items split into at most `threads` contiguous
/// chunks of equal size. `lane` (below `threads`) names the thread that runs the chunk: no two
/// chunks running at once have the same lane, so a body may use per-lane scratch. The chunks run
/// on the runtime's spinning pool (`cnx_pool.h`: no wake-up between the many short sections of a
/// small model); when the pool is taken (another caller, or a section inside a section), on
/// Dispatch.
func parallelChunks(_ count: Int, threads: Int, _ body: (Int, Int, Int) -> Void) {
    let chunks = max(1, min(threads, count))
    if chunks == 1 {
        body(0, count, 0)
        return
    }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: chunks + 1) { bounds in
        for i in 0...chunks { bounds[i] = count * i / chunks }
        runSection(bounds, chunks: chunks, threads: threads, body)
    }
}

/// As `parallelChunks`, but in chunks of decreasing size (what is left over twice the
/// thread count, down to `minimum` items) that the threads claim as they finish the previous
/// one: when one thread runs slower (its core shared, on a busy host), the other takes more of
/// the work instead of waiting for it at the end of the section.
func parallelGuided(_ count: Int, threads: Int, minimum: Int = 1, _ body: (Int, Int, Int) -> Void) {
    let threads = max(1, min(threads, count))
    if threads == 1 {
        body(0, count, 0)
        return
    }
    let step = max(1, minimum)
    // At most `count` chunks (each at least one item): the bounds in one pass.
    withUnsafeTemporaryAllocation(of: Int.self, capacity: count + 1) { bounds in
        var chunks = 0
        bounds[0] = 0
        while bounds[chunks] < count {
            let left = count - bounds[chunks]
            bounds[chunks + 1] = bounds[chunks] + min(left, max(step, left / (2 * threads)))
            chunks += 1
        }
        runSection(bounds, chunks: chunks, threads: threads, body)
    }
}

/// Runs `body(start, end, lane)` over `count` items split into one contiguous share per thread.
/// A thread takes pieces of up to `piece` items from the front of its own share (the items its
/// core worked on in the section before, so still in its cache); once that is done, it takes
/// pieces from the back of the share with the most left: half of what is left there, at least
/// `least` and at most `piece` items. So a thread that runs slower (its core shared, on a busy
/// host) hands the end of its share over instead of making the others wait for it.
func parallelShares(_ count: Int, threads: Int, piece: Int, least: Int, _ body: (Int, Int, Int) -> Void) {
    let lanes = max(1, min(threads, count)), piece = max(1, piece)
    if lanes == 1 {
        for lo in stride(from: 0, to: count, by: piece) { body(lo, min(count, lo + piece), 0) }
        return
    }
    let line = 8  // one cache line per share
    withUnsafeTemporaryAllocation(of: UInt64.self, capacity: lanes * line) { words in
        let shares = words.baseAddress!
        for l in 0..<lanes { cnx_share_set(shares + l * line, Int64(count * l / lanes), Int64(count * (l + 1) / lanes)) }
        parallelChunks(lanes, threads: lanes) { _, _, lane in
            var first: Int64 = 0
            while true {
                let n = Int(cnx_share_take(shares + lane * line, 0, Int64(piece), Int64(least), &first))
                if n == 0 { break }
                body(Int(first), Int(first) + n, lane)
            }
            while true {
                var victim = -1, most: Int64 = 0
                for l in 0..<lanes where l != lane {
                    let left = cnx_share_left(shares + l * line)
                    if left > most { (victim, most) = (l, left) }
                }
                if victim < 0 { return }
                let n = Int(cnx_share_take(shares + victim * line, 1, Int64(piece), Int64(least), &first))
                if n > 0 { body(Int(first), Int(first) + n, lane) }
            }
        }
    }
}

/// Runs chunk i (items bounds[i]..<bounds[i + 1]) of `chunks` on the pool, or on Dispatch when
/// the pool is taken (each of `threads` iterations then runs a contiguous share of the chunks as
/// its lane).
private func runSection(
    _ bounds: UnsafeMutableBufferPointer<Int>, chunks: Int, threads: Int, _ body: (Int, Int, Int) -> Void
) {
    let bounds = UnsafePointer(bounds.baseAddress!)
    let ran = withoutActuallyEscaping(body) { body -> Bool in
        var section = PoolSection(bounds: bounds, body: body)
        return withUnsafeMutablePointer(to: &section) { p in
            cnx_pool_run(
                Int64(threads), Int64(chunks),
                { ctx, i, lane in
                    let s = ctx!.assumingMemoryBound(to: PoolSection.self)
                    let (lo, hi) = (s.pointee.bounds[Int(i)], s.pointee.bounds[Int(i) + 1])
                    if lo < hi { s.pointee.body(lo, hi, Int(lane)) }
                }, p) != 0
        }
    }
    if ran { return }
    let lanes = min(threads, chunks)
    DispatchQueue.concurrentPerform(iterations: lanes) { t in
        for i in (chunks * t / lanes)..<(chunks * (t + 1) / lanes) where bounds[i] < bounds[i + 1] {
            body(bounds[i], bounds[i + 1], t)
        }
    }
}

/// Per-thread scratch memory, grown on demand and reused across layers and calls.
final class Scratch {
    private var buffers: [UnsafeMutablePointer<Float>?]
    private var sizes: [Int]

    init(slots: Int) {
        buffers = Array(repeating: nil, count: slots)
        sizes = Array(repeating: 0, count: slots)
    }

    /// The current buffer of `slot`, if any (without growing it).
    func existing(_ slot: Int) -> UnsafeMutablePointer<Float>? { buffers[slot] }

    func buffer(_ slot: Int, floats: Int) -> UnsafeMutablePointer<Float> {
        if sizes[slot] < floats {
            buffers[slot]?.deallocate()
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(floats, 1) * 4, alignment: 64)
            buffers[slot] = raw.bindMemory(to: Float.self, capacity: max(floats, 1))
            sizes[slot] = floats
        }
        return buffers[slot]!
    }

    deinit { for b in buffers { b?.deallocate() } }
}

/// A fused node ready to run: its payload, read once at load, and its GEMM layers packed.
struct PreparedNode {
    /// The node's payload; a block's bfloat16 depthwise weight widened to float32 (exact).
    let payload: FusedPayload
    /// By layer number (`FusedPayload.layers`).
    let layers: [Int: LayerWeights]
    /// A block whose depthwise convolution runs on bfloat16 (its weight is bfloat16 in the file).
    var depthwiseOnBF16 = false

    func layer(_ number: Int) throws -> LayerWeights {
        guard let l = layers[number] else { throw CNXError("pointwise layer \(number) was not prepared") }
        return l
    }
}

/// What a fused kernel gets besides its prepared node: the input map and where to work.
struct FusedCall {
    let nodeIndex: Int
    let input: Tensor
    /// The block may overwrite its input (nothing else reads it later).
    let inPlace: Bool
    /// The arena buffer a stem or downsample may write its output into.
    let arena: (Scratch, Int)?
    let scratch: [Scratch]
    let observer: (ActivationObserver, Int)?

    /// Tells the observer (calibration) about the input of GEMM layer `layer`.
    func report(_ layer: Int, _ p: UnsafePointer<Float>, _ count: Int) {
        observer?.0.observe(node: observer!.1, layer: layer, values: UnsafeBufferPointer(start: p, count: count))
    }
}

/// The fast executor of optimised graphs: the fused ConvNeXt operations run on the SIMD kernels
/// with pre-packed weights, threaded over rows of the feature map; any other node runs on the
/// reference kernels. Immutable after creation, so one instance serves many threads at once.
final class FastExecutor: @unchecked Sendable {
    let graph: Graph
    let threads: Int
    /// The fused nodes, by node index: payload and packed layers.
    private var prepared: [Int: PreparedNode] = [:]
    /// The schedule's bookkeeping, computed once (the graph's order is fixed): by node index, the
    /// values no later node reads (dropped after it: not graph outputs, not initializers), and
    /// whether the node is the last reader of its first input, read once there (a block may then
    /// overwrite it, unless the caller passed it).
    private let dropsAfter: [[String]]
    private let lastReaderOfInput: [Bool]
    private let outputNames: Set<String>
    /// The same prepared weights run by one thread: each thread's share of a batch's images
    /// (`runImagesOnLanes`). Set once, at the end of `init`.
    private var oneThread: FastExecutor?

    typealias FusedKernel = (FastExecutor, PreparedNode, FusedCall) throws -> Tensor

    /// The fast kernels, by op type (the op types of `OpSchema` and `ReferenceKernels.table`):
    /// a node whose type is not here runs on its reference kernel.
    static let fusedKernels: [OpType: FusedKernel] = [
        .stem: { e, p, c in try e.stem(p, c) },
        .downsample: { e, p, c in try e.downsample(p, c) },
        .block: { e, p, c in try e.block(p, c) },
        .head: { e, p, c in try e.head(p, c) },
    ]

    init(graph: Graph, threads: Int) throws {
        self.graph = graph
        self.threads = max(1, threads)
        let outputNames = Set(graph.outputs.map(\.name))
        self.outputNames = outputNames
        (dropsAfter, lastReaderOfInput) = FastExecutor.schedule(graph, outputs: outputNames)
        // Float weights packed once, shared by the nodes that read the same initializer.
        var packedFloat: [String: PackedMatrix] = [:]
        // A backbone output's norm this runtime does not know is refused at load too.
        for node in graph.nodes where node.op == .features {
            _ = try FeaturesPayload(node)
        }
        for (nodeIndex, node) in graph.nodes.enumerated() where FastExecutor.fusedKernels[node.op] != nil {
            // What this runtime cannot run (a norm or activation it does not know, an int8 layer
            // without its scales) is refused at load, not at the first prediction.
            var payload = try FusedPayload(node, in: graph)
            var depthwiseOnBF16 = false
            if case .block(var op) = payload, op.depthwise.onBFloat16, let wide = op.depthwise.weight.tensor.widenedHalf() {
                // The kernels read float32 weights: the bfloat16 values, exactly.
                op.depthwise.weight = Constant(name: op.depthwise.weight.name, tensor: wide)
                payload = .block(op)
                depthwiseOnBF16 = true
            }
            var layers: [Int: LayerWeights] = [:]
            for (number, linear) in payload.layers {
                do {
                    if case .float32 = linear.precision {
                        let m = packedFloat[linear.weight.name] ?? PackedMatrix(linear.weight.tensor)
                        packedFloat[linear.weight.name] = m
                        layers[number] = .float(m)
                    } else {
                        layers[number] = try LayerWeights(linear)
                    }
                } catch let e as CNXError {
                    throw CNXError("\(node.label): \(e.message)")
                }
                linear.weight.tensor.storage.dropPages()
            }
            prepared[nodeIndex] = PreparedNode(payload: payload, layers: layers, depthwiseOnBF16: depthwiseOnBF16)
        }
        if self.threads > 1 { oneThread = FastExecutor(sharing: self) }
    }

    /// One thread's executor over another's prepared nodes (no packing again).
    private init(sharing other: FastExecutor) {
        graph = other.graph
        threads = 1
        prepared = other.prepared
        dropsAfter = other.dropsAfter
        lastReaderOfInput = other.lastReaderOfInput
        outputNames = other.outputNames
    }

    /// Threads used per layer when `rows` rows of work are available.
    private func lanes(_ rows: Int) -> Int { min(threads, max(1, rows / 8)) }

    func run(_ inputs: [String: Tensor], scratch: [Scratch], observer: ActivationObserver? = nil) throws -> [String: Tensor] {
        if observer == nil, let outputs = try runImagesOnLanes(inputs, scratch: scratch) { return outputs }
        return try runGraph(inputs, scratch: scratch, observer: observer)
    }

    /// A batch of at least as many images as threads: each thread runs whole images on its own
    /// (the one-thread executor, its own scratch), so no thread waits for another inside the
    /// model and each image's activations stay in one core's cache; the images beyond a multiple
    /// of the thread count then run as a batch of their own, every thread on each. The outputs are
    /// joined along the batch. Nil (the caller runs the batch whole) when the graph does not have
    /// one 4-D input, or an output does not have the batch as its first dimension.
    private func runImagesOnLanes(_ inputs: [String: Tensor], scratch: [Scratch]) throws -> [String: Tensor]? {
        guard let single = oneThread, graph.inputs.count == 1, inputs.count == 1, let name = graph.inputs.first?.name,
            let x = inputs[name], x.dtype == .float32, x.shape.count == 4
        else { return nil }
        let n = x.shape[0], lanes = min(threads, scratch.count)
        guard lanes > 1, n >= lanes else { return nil }
        let image = x.count / n, whole = n / lanes * lanes
        func images(_ range: Range<Int>) -> Tensor {
            let t = Tensor(zeros: .float32, shape: [range.count] + x.shape.dropFirst())
            t.copyFloats(from: x, offset: range.lowerBound * image, count: range.count * image)
            return t
        }
        var parts = [(range: Range<Int>, outputs: [String: Tensor])?](repeating: nil, count: lanes)
        var failure: Error?
        let lock = NSLock()
        parallelChunks(lanes, threads: lanes) { lo, hi, _ in
            for lane in lo..<hi {
                let range = (whole * lane / lanes)..<(whole * (lane + 1) / lanes)
                do {
                    let outputs = try single.runGraph([name: images(range)], scratch: [scratch[lane]], observer: nil)
                    lock.withLock { parts[lane] = (range, outputs) }
                } catch {
                    lock.withLock { failure = failure ?? error }
                }
            }
        }
        if let failure { throw failure }
        var all = parts.compactMap { $0 }
        if whole < n { all.append((whole..<n, try runGraph([name: images(whole..<n)], scratch: scratch, observer: nil))) }
        var joined: [String: Tensor] = [:]
        for o in graph.outputs {
            guard let first = all.first?.outputs[o.name], !first.shape.isEmpty else { return nil }
            let tail = Array(first.shape.dropFirst())
            var pieces: [Tensor] = []
            for part in all {
                guard let t = part.outputs[o.name], t.dtype == first.dtype, t.shape == [part.range.count] + tail else { return nil }
                pieces.append(t)
            }
            joined[o.name] = try Kernels.concat(pieces, axis: 0)
        }
        return joined
    }

    /// `dropsAfter` and `lastReaderOfInput` of `graph` (see there).
    private static func schedule(_ graph: Graph, outputs: Set<String>) -> ([[String]], [Bool]) {
        // A value the run computes and may let go of: not a graph output, not an initializer.
        func transient(_ name: String) -> Bool { !outputs.contains(name) && graph.initializers[name] == nil }
        var last: [String: Int] = [:], count: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() {
            for name in n.inputs where !name.isEmpty { last[name] = i }
        }
        var drops = [[String]](repeating: [], count: graph.nodes.count)
        for (name, i) in last.sorted(by: { $0.key < $1.key }) where transient(name) { drops[i].append(name) }
        // Readings of each value from node i on, walking back from the end.
        var exclusive = [Bool](repeating: false, count: graph.nodes.count)
        for i in graph.nodes.indices.reversed() {
            let n = graph.nodes[i]
            for name in n.inputs where !name.isEmpty { count[name, default: 0] += 1 }
            if let input = n.inputs.first, !input.isEmpty {
                exclusive[i] = count[input] == 1 && transient(input)
            }
        }
        return (drops, exclusive)
    }

    /// Runs every node in order, each fused one with all of this executor's threads.
    private func runGraph(_ inputs: [String: Tensor], scratch: [Scratch], observer: ActivationObserver?) throws -> [String: Tensor] {
        // The values computed so far and the caller's inputs; initializers are read from the
        // graph (not copied: the copy was a few percent of a small model's time).
        var values = inputs
        func value(_ name: String) -> Tensor? { values[name] ?? graph.initializers[name] }
        // Which value each arena buffer holds in this call.
        var arenaHolders: [Int: String] = [:]
        for (nodeIndex, node) in graph.nodes.enumerated() {
            guard let kernel = FastExecutor.fusedKernels[node.op], let p = prepared[nodeIndex] else {
                var args: [Tensor?] = []
                for name in node.inputs {
                    if name.isEmpty { args.append(nil); continue }
                    guard let v = value(name) else { throw CNXError("\(node.label) reads '\(name)', which nothing computed") }
                    args.append(v)
                }
                let outs: [Tensor]
                do {
                    // A backbone's output map (norm, NCHW) has its own fast kernel; the rest of
                    // what is not fused runs on the reference kernels.
                    outs = node.op == .features ? [try features(node, args, scratch: scratch)] : try ReferenceKernels.evaluate(node, args)
                } catch let e as CNXError { throw CNXError("\(node.label): \(e.message)") }
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty { values[name] = t }
                for name in dropsAfter[nodeIndex] { values[name] = nil }
                continue
            }
            let input = node.inputs.first ?? ""
            guard let x = value(input), x.dtype == .float32 else {
                throw CNXError("\(node.label) reads '\(input)', which nothing computed as float32")
            }
            // The block may overwrite its input when nothing else reads that value later.
            let exclusive = lastReaderOfInput[nodeIndex] && inputs[input] == nil
            let arena =
                node.op == .stem || node.op == .downsample
                ? arenaSlot(for: node, values: values, holding: arenaHolders).map { (scratch[0], $0) } : nil
            let call = FusedCall(
                nodeIndex: nodeIndex, input: x, inPlace: exclusive, arena: arena, scratch: scratch,
                observer: observer.map { ($0, nodeIndex) })
            let result: Tensor
            do { result = try kernel(self, p, call) } catch let e as CNXError { throw CNXError("\(node.label): \(e.message)") }
            values[node.outputs[0]] = result
            // Track which value each arena buffer holds: a new map, or a block's in-place update.
            for slot in [FastExecutor.arenaSlots.0, FastExecutor.arenaSlots.1] {
                if let buffer = scratch[0].existing(slot), result.storage.withUnsafeBytes({ $0.baseAddress == UnsafeRawPointer(buffer) }) {
                    arenaHolders[slot] = node.outputs[0]
                }
            }
            for name in dropsAfter[nodeIndex] { values[name] = nil }
        }
        var out: [String: Tensor] = [:]
        for o in graph.outputs {
            guard let t = value(o.name) else { throw CNXError("graph output '\(o.name)' was never computed") }
            out[o.name] = t
        }
        return out
    }

    /// The tensor of an optional constant, checked to hold `count` float32 values.
    private func vector(_ c: Constant?, count: Int, _ what: String) throws -> Tensor? {
        guard let c else { return nil }
        guard c.tensor.dtype == .float32, c.tensor.count == count else {
            throw CNXError("\(what) '\(c.name)' must hold \(count) float32 values")
        }
        return c.tensor
    }

    func block(_ p: PreparedNode, _ call: FusedCall) throws -> Tensor {
        guard case .block(let op) = p.payload else { throw CNXError("not a block") }
        let x = call.input, scratch = call.scratch
        guard x.shape.count == 4 else { throw CNXError("input must be NHWC, got \(x.shape)") }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let dw = op.depthwise.weight.tensor
        let k = dw.shape.first ?? 0
        guard dw.dtype == .float32, dw.shape == [k, k, c], k % 2 == 1 else {
            throw CNXError("depthwise weight \(dw.shape) does not fit \(x.shape)")
        }
        let w1 = try p.layer(1), w2 = try p.layer(2)
        let hidden = w1.n
        guard w1.k == c, w2.k == hidden, w2.n == c else {
            throw CNXError("pointwise weights [\(w1.k), \(w1.n)] and [\(w2.k), \(w2.n)] do not fit \(c) channels")
        }
        let constants = [
            dw, try vector(op.depthwise.bias, count: c, "dw_bias"), try vector(op.pw1.bias, count: hidden, "B1"),
            try vector(op.pw2.bias, count: c, "B2"), try vector(op.grn?.gamma, count: hidden, "grn_gamma"),
            try vector(op.grn?.beta, count: hidden, "grn_beta"),
        ]
        let eps = op.norm.epsilon, norm = op.norm.kind, act = op.activation.code
        // int8 layers with equalized input channels: the norm (layer 1) and the GRN (layer 2)
        // write their output already divided by the channel scales.
        let m1 = w1.inputMultipliers, m2 = w2.inputMultipliers
        if m2 != nil && op.grn == nil { throw CNXError("layer 2's channel scales need the block's GRN, which makes layer 2's input") }
        let out = call.inPlace ? x : x.copy()
        let pixels = h * w
        // Images per pass: one. Passing several small maps at once through the pointwise layers
        // (up to 1024 rows, without GRN) measured slower at batch 8 in bf16 (row tiles instead of
        // the column split below; Benchmarks/FP.md), so it stays off; the loop takes any count.
        let group = 1
        let maxRows = group * pixels
        // Row tiles: about 64 or 128 rows (so a tile's hidden activation stays in cache). Each
        // thread takes one contiguous share of the rows, the same rows its depthwise pass just
        // wrote (they are in its core's cache), and tiles it. int8 shares and tiles are whole
        // multiples of the kernel's tile height (14 rows on AVX-512 VNNI), so only the map's last
        // tile has rows for the shorter, slower kernel tiles (a 121-row tile ran as 8 x 14 + 7 + 2).
        let tileMax = hidden >= 1536 ? 64 : 128
        var rowMultiple = 1
        if case .int8 = w1, case .int8 = w2 { rowMultiple = Int(cnx_qgemm_row_tile()) }
        /// body(firstRow, rows, lane) for every tile of `rows` rows, the threads' shares in parallel.
        func rowTiles(_ rows: Int, _ body: (Int, Int, Int) -> Void) {
            let m = rowMultiple, units = (rows + m - 1) / m
            // Pieces of nearly equal height in a thread's share (288 rows: 58 58 58 58 56, not 64 x 4 + 32).
            let share = (units + threads - 1) / threads, count = max(1, (share * m + tileMax - 1) / tileMax)
            parallelShares(units, threads: threads, piece: (share + count - 1) / count, least: (28 + m - 1) / m) { lo, hi, lane in
                let r0 = lo * m, r1 = min(rows, hi * m)
                if r0 < r1 { body(r0, r1 - r0, lane) }
            }
        }
        // The hidden activation's row stride (float32, and bfloat16 between the layers): when a
        // row is an even number of 64-byte lines (2048 floats: 8 KB), the second layer's tile
        // rows all fall in the same few L1 sets and evict each other; one more line makes the
        // count odd and spreads them over every set. On an Intel Xeon (family 6 model 207), one
        // thread, best of 51: 58 x 2048 x 512 +1.3%, 144 x 4096 x 1024 +2%, 56 x 3072 x 768
        // +1-3.5%, 144 x 1024 x 4096 +2.7%. The calibration observer reads the rows packed.
        let ldh = call.observer == nil && hidden % 32 == 0 ? hidden + 16 : hidden
        let ldh16 = hidden % 64 == 0 ? hidden + 32 : hidden
        // The tallest tile (at most about tileMax rows, rounded up to rowMultiple).
        let tileLimit = min(maxRows, tileMax + rowMultiple)
        // Bytes of u8 codes per lane: a tile of inputs to either layer.
        func codes(_ lane: Int) -> UnsafeMutablePointer<UInt8> {
            UnsafeMutableRawPointer(scratch[lane].buffer(4, floats: (tileLimit * max(c, hidden) + 3) / 4 + 16)).assumingMemoryBound(
                to: UInt8.self)
        }
        let t = scratch[0].buffer(0, floats: maxRows * c)
        // Small maps (the last stages: few rows, large weights): the threads split the weights'
        // columns instead of the rows, so each reads its share of them once (every precision).
        let splitColumns = maxRows <= 256 && threads > 1 && call.observer == nil
        let split1 = w1.columnGEMM, split2 = w2.columnGEMM
        // bfloat16 layers on the dot path: the norm's output is rounded to bfloat16 once, on its
        // rows still in cache, and the first layer's epilogue writes the hidden activation in
        // bfloat16, which the second layer reads as it is (the same bits as rounding in the GEMMs,
        // without a rounding pass per K block and thread, and half the hidden activation's bytes).
        var halves: (PackedHalfMatrix, PackedHalfMatrix, UnsafeMutablePointer<UInt16>)?
        if op.grn == nil, call.observer == nil, c % 2 == 0, hidden % 2 == 0, case .half(let h1) = w1, case .half(let h2) = w2,
            h1.takesBF16Inputs, h2.takesBF16Inputs
        {
            halves = (h1, h2, Self.halfBuffer(scratch[0], 7, count: maxRows * c))
        }
        // The depthwise layer on the bfloat16 dot product (cnx_dwconv_nhwc_rows_bf16: inputs and
        // weights rounded to bfloat16, float32 sums; 1.4-1.8x the float32 pass on ConvNeXt's
        // shapes): a block whose depthwise weight is bfloat16 (what `quantize --int8` writes for
        // int8 blocks), and a bfloat16 block on the dot path, which may round (Formats/CNX.md).
        // Where the dot kernel does not run, a bfloat16 depthwise weight still means a rounded
        // input: the float32 kernel runs on a rounded copy (`roundedInput`).
        let dwOnDot = cnx_dwconv_bf16_runs(Int64(k)) != 0
        var dwBF16 = p.depthwiseOnBF16 && dwOnDot
        if case .half(let h1) = w1, h1.takesBF16Inputs { dwBF16 = true }
        let roundedInput = p.depthwiseOnBF16 && !dwOnDot ? scratch[0].buffer(2, floats: maxRows * c) : nil
        let (hh, ww, cc, kk) = (Int64(h), Int64(w), Int64(c), Int64(k))
        // int8 layers on a small map split by columns too (below): the norm's output is quantized
        // once, on its rows still in cache, for both threads.
        var int8Split: (PackedQMatrix, PackedQMatrix, UnsafeMutablePointer<UInt8>)?
        if splitColumns, op.grn == nil, case .int8(let q1) = w1, case .int8(let q2) = w2 {
            let codes = UnsafeMutableRawPointer(scratch[0].buffer(7, floats: (maxRows * c + 3) / 4 + 16))
            int8Split = (q1, q2, codes.assumingMemoryBound(to: UInt8.self))
        }
        out.withUnsafeMutableFloats { outBuffer in
            withFloatPointers(constants) { ptr in
                let (dwp, dwb, b1, b2) = (ptr[0]!, ptr[1], ptr[2], ptr[3])
                for b0 in stride(from: 0, to: n, by: group) {
                    let images = min(group, n - b0), rowsAll = images * pixels
                    let xb = outBuffer.baseAddress! + b0 * pixels * c
                    if let xr = roundedInput {
                        parallelChunks(images * h, threads: threads) { lo, hi, _ in
                            cnx_round_bf16_f32(xb + lo * w * c, Int64((hi - lo) * w * c), xr + lo * w * c)
                        }
                    }
                    let dwInput = UnsafePointer(roundedInput ?? xb)
                    // Depthwise rows of every image of the pass, split over the threads even on
                    // small maps (a 7-row map's row is still 7 x C x k^2 multiply-adds).
                    parallelChunks(images * h, threads: threads) { lo, hi, _ in
                        var i = lo
                        while i < hi {
                            let image = i / h, y0 = i % h, y1 = min(h, y0 + hi - i)
                            let xi = dwInput + image * pixels * c, ti = t + image * pixels * c
                            if !dwBF16 || cnx_dwconv_nhwc_rows_bf16(xi, hh, ww, cc, kk, dwp, dwb, ti, Int64(y0), Int64(y1)) == 0 {
                                cnx_dwconv_nhwc_rows_f32(xi, hh, ww, cc, kk, dwp, dwb, ti, Int64(y0), Int64(y1))
                            }
                            // The norm as the depthwise pass's epilogue, on the rows still in cache;
                            // for bfloat16 layers a LayerNorm writes its rows rounded (the same bits
                            // as rounding the float rows, which nothing else reads then).
                            let rows = ti + y0 * w * c, pixelRows = (y1 - y0) * w, first = (image * pixels + y0 * w) * c
                            if let t16 = halves?.2 {
                                let r16 = t16 + first
                                if norm != .layer || cnx_layernorm_rows_bf16(rows, Int64(pixelRows), Int64(c), eps, m1, nil, r16) == 0 {
                                    FusedAttributes.normRows(norm, rows, rows: pixelRows, c: c, eps: eps, gamma: m1, beta: nil, into: rows)
                                    cnx_round_bf16(rows, Int64(pixelRows * c), r16)
                                }
                            } else {
                                FusedAttributes.normRows(norm, rows, rows: pixelRows, c: c, eps: eps, gamma: m1, beta: nil, into: rows)
                                if let (q1, _, a8) = int8Split { q1.quantize(rows, count: pixelRows * c, into: a8 + first) }
                            }
                            i += y1 - y0
                        }
                    }
                    if let grn = op.grn, let grnGamma = ptr[4], let grnBeta = ptr[5] {
                        // GRN needs statistics over the whole map: materialise the hidden activation.
                        let hbuf = scratch[0].buffer(1, floats: pixels * hidden)
                        rowTiles(pixels) { r0, rows, lane in
                            let ln = t + r0 * c
                            call.report(1, ln, rows * c)
                            w1.apply(
                                ln, rows: rows, lda: c, bias: b1, act: act, residual: nil, ldr: 0, into: hbuf + r0 * hidden, ldo: hidden,
                                codes: codes(lane))
                        }
                        applyGRN(hbuf, pixels: pixels, channels: hidden, gamma: grnGamma, beta: grnBeta, eps: grn.epsilon, multipliers: m2)
                        call.report(2, hbuf, pixels * hidden)
                        rowTiles(pixels) { r0, rows, lane in
                            w2.apply(
                                hbuf + r0 * hidden, rows: rows, lda: hidden, bias: b2, act: CNX_ACT_NONE, residual: xb + r0 * c, ldr: c,
                                into: xb + r0 * c, ldo: c, codes: codes(lane))
                        }
                        continue
                    }
                    if splitColumns, let (h1, h2, t16) = halves {
                        // bfloat16 between the layers.
                        let h16 = Self.halfBuffer(scratch[0], 1, count: rowsAll * ldh16)
                        splitByColumns(hidden: hidden, c: c) { columns in
                            h1.multiply16(
                                t16, rows: rowsAll, lda: c, columns: columns, bias: b1, act: act, residual: nil, ldr: 0, into: nil,
                                into16: h16, ldc: ldh16)
                        } layer2: { columns in
                            h2.multiply16(
                                h16, rows: rowsAll, lda: ldh16, columns: columns, bias: b2, act: CNX_ACT_NONE, residual: xb, ldr: c,
                                into: xb, into16: nil, ldc: c)
                        }
                        continue
                    }
                    if let (q1, q2, a8) = int8Split {
                        // int8 to int8 (the hidden activation requantized in the first layer's
                        // epilogue, as in the row tiles).
                        let h8 = UnsafeMutableRawPointer(scratch[0].buffer(1, floats: (rowsAll * hidden + 3) / 4 + 16))
                            .assumingMemoryBound(to: UInt8.self)
                        splitByColumns(hidden: hidden, c: c) { columns in
                            q1.multiply(
                                a8, rows: rowsAll, lda: c, columns: columns, bias: b1, act: act, requantizingFor: q2, into: h8, ldo: hidden)
                        } layer2: { columns in
                            q2.multiply(
                                h8, rows: rowsAll, lda: hidden, columns: columns, bias: b2, act: CNX_ACT_NONE, residual: xb, ldr: c,
                                into: xb,
                                ldo: c)
                        }
                        continue
                    }
                    if splitColumns, let split1, let split2 {
                        // float32 or half-precision weights, float32 between the layers.
                        let hbuf = scratch[0].buffer(1, floats: rowsAll * ldh)
                        splitByColumns(hidden: hidden, c: c) { columns in
                            split1.multiply(
                                t, rows: rowsAll, lda: c, columns: columns, bias: b1, act: act, residual: nil, ldr: 0, into: hbuf,
                                ldc: ldh)
                        } layer2: { columns in
                            split2.multiply(
                                hbuf, rows: rowsAll, lda: ldh, columns: columns, bias: b2, act: CNX_ACT_NONE, residual: xb, ldr: c,
                                into: xb, ldc: c)
                        }
                        continue
                    }
                    // Tiles of rows: the 4C hidden activation of a tile stays in cache and the whole
                    // map's hidden activation never exists.
                    rowTiles(rowsAll) { r0, rows, lane in
                        let hb = scratch[lane].buffer(3, floats: tileLimit * ldh)
                        let q = codes(lane)
                        let ln = t + r0 * c
                        call.report(1, ln, rows * c)
                        if case .int8(let q1) = w1, case .int8(let q2) = w2, call.observer == nil {
                            // int8 to int8: the norm's output quantized once, the activation's output
                            // requantized in the first GEMM's epilogue, dequantized in the second's.
                            q1.quantize(ln, count: rows * c, into: q)
                            let hq = UnsafeMutableRawPointer(hb).assumingMemoryBound(to: UInt8.self)
                            q1.multiply(q, rows: rows, lda: c, bias: b1, act: act, requantizingFor: q2, into: hq, ldo: hidden)
                            q2.multiply(
                                hq, rows: rows, lda: hidden, bias: b2, act: CNX_ACT_NONE, residual: xb + r0 * c, ldr: c,
                                into: xb + r0 * c, ldo: c)
                            return
                        }
                        if let (h1, h2, t16) = halves {
                            let h16 = UnsafeMutableRawPointer(hb).assumingMemoryBound(to: UInt16.self)
                            h1.multiply16(
                                t16 + r0 * c, rows: rows, lda: c, columns: 0..<hidden, bias: b1, act: act, residual: nil, ldr: 0,
                                into: nil, into16: h16, ldc: ldh16)
                            h2.multiply16(
                                h16, rows: rows, lda: ldh16, columns: 0..<c, bias: b2, act: CNX_ACT_NONE, residual: xb + r0 * c,
                                ldr: c, into: xb + r0 * c, into16: nil, ldc: c)
                            return
                        }
                        w1.apply(ln, rows: rows, lda: c, bias: b1, act: act, residual: nil, ldr: 0, into: hb, ldo: ldh, codes: q)
                        call.report(2, hb, rows * hidden)
                        w2.apply(
                            hb, rows: rows, lda: ldh, bias: b2, act: CNX_ACT_NONE, residual: xb + r0 * c, ldr: c, into: xb + r0 * c,
                            ldo: c, codes: q)
                    }
                }
            }
        }
        return out
    }
    /// A block's two pointwise layers on a small map, split by output columns over the threads:
    /// `layer1` over ranges of the hidden activation's columns, then `layer2` over ranges of the
    /// output's (each range a multiple of 32 columns, the panel width, from the start).
    private func splitByColumns(hidden: Int, c: Int, layer1: (Range<Int>) -> Void, layer2: (Range<Int>) -> Void) {
        byColumns(hidden, layer1)
        byColumns(c, layer2)
    }

    /// `body` over ranges of `n` output columns (each a multiple of 32 columns, the panel width,
    /// from the start) that the threads claim as they finish: one layer with few rows and a
    /// large weight, each thread reading its share of the weight once.
    private func byColumns(_ n: Int, _ body: (Range<Int>) -> Void) {
        parallelGuided((n + 31) / 32, threads: threads) { lo, hi, _ in body(lo * 32..<min(n, hi * 32)) }
    }

    /// Scratch slot `slot` of `scratch` as room for `count` bfloat16 values.
    private static func halfBuffer(_ scratch: Scratch, _ slot: Int, count: Int) -> UnsafeMutablePointer<UInt16> {
        UnsafeMutableRawPointer(scratch.buffer(slot, floats: (count + 1) / 2 + 16)).assumingMemoryBound(to: UInt16.self)
    }

    /// GRN in place on a (pixels x channels) map: x += gamma ⊙ x ⊙ Nx + beta, then times
    /// `multipliers` per channel when given (the next int8 layer's equalization).
    private func applyGRN(
        _ x: UnsafeMutablePointer<Float>, pixels: Int, channels c: Int, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, eps: Float,
        multipliers: [Float]? = nil
    ) {
        var sums = [Double](repeating: 0, count: c)
        for p in 0..<pixels {
            let row = x + p * c
            for i in 0..<c { sums[i] += Double(row[i]) * Double(row[i]) }
        }
        let norms = sums.map { Float($0.squareRoot()) }
        let mean = norms.reduce(0, +) / Float(c)
        let factor = (0..<c).map { 1 + gamma[$0] * (norms[$0] / (mean + eps)) }
        if let m = multipliers {
            let scaled = (0..<c).map { factor[$0] * m[$0] }, shift = (0..<c).map { beta[$0] * m[$0] }
            for p in 0..<pixels {
                let row = x + p * c
                for i in 0..<c { row[i] = row[i] * scaled[i] + shift[i] }
            }
            return
        }
        for p in 0..<pixels {
            let row = x + p * c
            for i in 0..<c { row[i] = row[i] * factor[i] + beta[i] }
        }
    }

    /// The activation arena: two buffers in the workspace that the feature maps alternate
    /// between. The stem writes buffer A; blocks update their map in place; each downsample
    /// writes the buffer its input is not in. So a whole network runs in two map-sized buffers
    /// (plus the depthwise output and per-thread tiles), reused from call to call.
    static let arenaSlots = (5, 6)

    /// The arena buffer a stem or downsample may write: not the one holding its input, and only
    /// when the value the buffer holds is dead and the output is not a graph output (an output
    /// must outlive the call).
    private func arenaSlot(for node: Node, values: [String: Tensor], holding: [Int: String]) -> Int? {
        guard !outputNames.contains(node.outputs[0]) else { return nil }
        let (a, b) = FastExecutor.arenaSlots
        let target = holding[a] == node.inputs.first ? b : a
        if let holder = holding[target], values[holder] != nil { return nil }
        return target
    }

    /// An output map in the arena's `slot` (or fresh memory without one).
    private func arenaTensor(_ shape: [Int], arena: (Scratch, Int)?) -> Tensor {
        guard let (scratch, slot) = arena else { return Tensor(zeros: .float32, shape: shape) }
        let count = shape.reduce(1, *)
        let p = scratch.buffer(slot, floats: count)
        return Tensor(dtype: .float32, shape: shape, storage: Storage(borrowingMutable: p, byteCount: count * 4, owner: scratch))
    }

    func stem(_ p: PreparedNode, _ call: FusedCall) throws -> Tensor {
        guard case .stem(let op) = p.payload else { throw CNXError("not a stem") }
        let x = call.input, scratch = call.scratch
        let wm = try p.layer(1)
        let nhwc = op.nhwcInput, k = op.kernel, stride = op.stride, pad = op.pad
        guard x.shape.count == 4 else { throw CNXError("input \(x.shape) does not fit the stem (kernel \(k))") }
        let (n, cin, h, w) = nhwc ? (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) : (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1
        guard stride > 0, pad >= 0, h + 2 * pad >= k, w + 2 * pad >= k, wm.k == cin * k * k else {
            throw CNXError("input \(x.shape) does not fit the stem (weight [\(wm.k), \(wm.n)], kernel \(k), stride \(stride), pad \(pad))")
        }
        let cout = wm.n
        guard wm.inputMultipliers == nil else { throw CNXError("a stem's layer takes no input channel scales") }
        let constants = [
            try vector(op.conv.bias, count: cout, "B"), try vector(op.norm.weight, count: cout, "ln_scale"),
            try vector(op.norm.bias, count: cout, "ln_bias"),
        ]
        let eps = op.norm.epsilon, norm = op.norm.kind, act = op.activation?.code ?? CNX_ACT_NONE
        let y = arenaTensor([n, oh, ow, cout], arena: call.arena)
        let patch = cin * k * k
        x.withUnsafeFloats { xBuffer in
            y.withUnsafeMutableFloats { yBuffer in
                withFloatPointers(constants) { ptr in
                    let (bias, gamma, beta) = (ptr[0], ptr[1], ptr[2])
                    for b in 0..<n {
                        let xb = xBuffer.baseAddress! + b * cin * h * w
                        let yb = yBuffer.baseAddress! + b * oh * ow * cout
                        parallelChunks(oh, threads: lanes(oh)) { lo, hi, lane in
                            let patches = scratch[lane].buffer(2, floats: ow * patch)
                            let codes = UnsafeMutableRawPointer(scratch[lane].buffer(4, floats: (ow * patch + 3) / 4 + 16))
                                .assumingMemoryBound(to: UInt8.self)
                            for oy in lo..<hi {
                                // The patches of output row oy (im2col, zeros outside the input; C kernel).
                                cnx_stem_patches_f32(
                                    xb, Int64(cin), Int64(h), Int64(w), nhwc ? 1 : 0, Int64(k), Int64(stride), Int64(pad),
                                    Int64(oy), Int64(ow), patches)
                                let out = yb + oy * ow * cout
                                call.report(1, patches, ow * patch)
                                wm.apply(
                                    patches, rows: ow, lda: patch, bias: bias, act: act, residual: nil, ldr: 0, into: out, ldo: cout,
                                    codes: codes)
                                FusedAttributes.normRows(norm, out, rows: ow, c: cout, eps: eps, gamma: gamma, beta: beta, into: out)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    func downsample(_ p: PreparedNode, _ call: FusedCall) throws -> Tensor {
        guard case .downsample(let op) = p.payload else { throw CNXError("not a downsample") }
        let x = call.input, scratch = call.scratch
        let wm = try p.layer(1)
        let k = op.kernel
        guard x.shape.count == 4, x.shape[1] % k == 0, x.shape[2] % k == 0, wm.k == x.shape[3] * k * k else {
            throw CNXError("input \(x.shape) does not fit the downsample (weight [\(wm.k), \(wm.n)])")
        }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow, cout) = (h / k, w / k, wm.n)
        let biasTensor = try vector(op.conv.bias, count: cout, "B")
        var gamma = try vector(op.norm.weight, count: c, "ln_scale")?.withUnsafeFloats(Array.init)
        var beta = try vector(op.norm.bias, count: c, "ln_bias")?.withUnsafeFloats(Array.init)
        if let m = wm.inputMultipliers {
            // One scale per channel, the same at every (ky, kx) of the patch: the norm applies it.
            guard (0..<m.count).allSatisfy({ m[$0] == m[$0 % c] }) else {
                throw CNXError("the input channel scales must repeat one value per channel over the patch")
            }
            gamma = (0..<c).map { (gamma?[$0] ?? 1) * m[$0] }
            beta = beta.map { b in (0..<c).map { b[$0] * m[$0] } }
        }
        let eps = op.norm.epsilon, norm = op.norm.kind
        let y = arenaTensor([n, oh, ow, cout], arena: call.arena)
        let patch = k * k * c
        x.withUnsafeFloats { xBuffer in
            y.withUnsafeMutableFloats { yBuffer in
                withFloatPointers([biasTensor]) { ptr in
                    let bias = ptr[0]
                    for b in 0..<n {
                        let xb = xBuffer.baseAddress! + b * h * w * c
                        let yb = yBuffer.baseAddress! + b * oh * ow * cout
                        // Normalise each input pixel of output pixel p straight into its place in its patch row.
                        func patchPixel(_ p: Int, into dst: UnsafeMutablePointer<Float>) {
                            let (oy, ox) = (p / ow, p % ow)
                            for ky in 0..<k {
                                let src = xb + ((oy * k + ky) * w + ox * k) * c
                                let into = dst + ky * k * c
                                FusedAttributes.normRows(norm, src, rows: k, c: c, eps: eps, gamma: gamma, beta: beta, into: into)
                            }
                        }
                        if oh * ow <= 256, threads > 1, call.observer == nil, let g = wm.columnGEMM {
                            // A small output map (the late downsamples: a few rows, a large weight) in
                            // float32 or half precision: every patch row first, then the threads split
                            // the weight's columns (each reads half of it once).
                            let patches = scratch[0].buffer(2, floats: oh * ow * patch)
                            parallelChunks(oh * ow, threads: threads) { lo, hi, _ in
                                for p in lo..<hi { patchPixel(p, into: patches + p * patch) }
                            }
                            byColumns(cout) { columns in
                                g.multiply(
                                    patches, rows: oh * ow, lda: patch, columns: columns, bias: bias, act: CNX_ACT_NONE, residual: nil,
                                    ldr: 0, into: yb, ldc: cout)
                            }
                            continue
                        }
                        // Split over output pixels, not rows: the late stages have 14 and 7 output
                        // rows, too few for a row split to use both threads.
                        parallelChunks(oh * ow, threads: lanes(oh * ow)) { lo, hi, lane in
                            let patches = scratch[lane].buffer(2, floats: ow * patch)
                            let codes = UnsafeMutableRawPointer(scratch[lane].buffer(4, floats: (ow * patch + 3) / 4 + 16))
                                .assumingMemoryBound(to: UInt8.self)
                            // Pieces of at most ow pixels (the scratch holds one output row of patches).
                            for p0 in stride(from: lo, to: hi, by: ow) {
                                let p1 = min(hi, p0 + ow)
                                for p in p0..<p1 { patchPixel(p, into: patches + (p - p0) * patch) }
                                call.report(1, patches, (p1 - p0) * patch)
                                wm.apply(
                                    patches, rows: p1 - p0, lda: patch, bias: bias, act: CNX_ACT_NONE, residual: nil, ldr: 0,
                                    into: yb + p0 * cout, ldo: cout, codes: codes)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    func head(_ p: PreparedNode, _ call: FusedCall) throws -> Tensor {
        guard case .head(let op) = p.payload else { throw CNXError("not a head") }
        let x = call.input, scratch = call.scratch
        guard x.shape.count == 4 else { throw CNXError("head input must be NHWC, got \(x.shape)") }
        let (n, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        let norm = op.norm.kind, eps = op.norm.epsilon
        let normParameters = [try vector(op.norm.weight, count: c, "ln_scale"), try vector(op.norm.bias, count: c, "ln_bias")]
        var features = Tensor(zeros: .float32, shape: [n, c])
        x.withUnsafeFloats { xBuffer in
            features.withUnsafeMutableFloats { fBuffer in
                withFloatPointers(normParameters) { ptr in
                    let (xp, fp, gamma, beta) = (xBuffer.baseAddress!, fBuffer.baseAddress!, ptr[0], ptr[1])
                    if op.normFirst {
                        // Norm every pixel (rows split over the threads), then average.
                        let normed = scratch[0].buffer(1, floats: hw * c)
                        for b in 0..<n {
                            parallelChunks(hw, threads: lanes(hw)) { lo, hi, _ in
                                FusedAttributes.normRows(
                                    norm, xp + (b * hw + lo) * c, rows: hi - lo, c: c, eps: eps, gamma: gamma, beta: beta,
                                    into: normed + lo * c)
                            }
                            cnx_reduce_middle_f32(normed, 1, Int64(hw), Int64(c), 0, fp + b * c)
                        }
                    } else {
                        cnx_reduce_middle_f32(xp, Int64(n), Int64(hw), Int64(c), 0, fp)
                        FusedAttributes.normRows(norm, fp, rows: n, c: c, eps: eps, gamma: gamma, beta: beta, into: fp)
                    }
                }
            }
        }
        // The optional layers: hidden (with the activation) and classifier, or the classifier alone.
        for (number, linear, act) in [(1, op.fc1, op.activation?.code ?? CNX_ACT_NONE), (2, op.fc2, CNX_ACT_NONE)] {
            guard let linear else { continue }
            let wm = try p.layer(number)
            guard wm.k == features.shape[1] else {
                throw CNXError("head layer \(number) weight [\(wm.k), \(wm.n)] does not fit \(features.shape[1]) features")
            }
            let bias = try vector(linear.bias, count: wm.n, "head layer \(number) bias")
            let y = Tensor(zeros: .float32, shape: [n, wm.n])
            try features.withUnsafeMutableFloats { fBuffer in
                let fp = fBuffer.baseAddress!
                if let m = wm.inputMultipliers {
                    guard number == 1 else { throw CNXError("a head's layer 2 takes no input channel scales") }
                    for r in 0..<n { for j in 0..<wm.k { fp[r * wm.k + j] *= m[j] } }
                }
                call.report(number, fp, fBuffer.count)
                let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(fBuffer.count, 1))
                defer { codes.deallocate() }
                y.withUnsafeMutableFloats { yBuffer in
                    withFloatPointers([bias]) { b in
                        if n <= 256, threads > 1, wm.n > 32, let g = wm.columnGEMM {
                            // A few rows and a large weight (the classifier: 768 x 1000 floats
                            // read once per image): the threads split its columns, so each reads
                            // its share, and neither waits idle through the layer.
                            byColumns(wm.n) { columns in
                                g.multiply(
                                    fp, rows: n, lda: wm.k, columns: columns, bias: b[0], act: act, residual: nil, ldr: 0,
                                    into: yBuffer.baseAddress!, ldc: wm.n)
                            }
                            return
                        }
                        wm.apply(
                            fp, rows: n, lda: wm.k, bias: b[0], act: act, residual: nil, ldr: 0, into: yBuffer.baseAddress!, ldo: wm.n,
                            codes: codes)
                    }
                }
            }
            features = y
        }
        return features
    }
}
