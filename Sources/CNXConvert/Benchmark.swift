import CKernels
import CNXFormat
import CNXGraph
import CNXReference
import CNXRuntime
import Foundation

/// `bench`: latency percentiles, throughput and peak memory of one model on random input.
public enum Benchmark {
    public struct Result {
        public var model: String
        public var runtime: String
        public var threads: Int
        public var batch: Int
        public var size: [Int]
        public var iterations: Int
        public var latenciesMs: [Double]
        public var loadMs: Double
        public var peakRSSMB: Double
        /// Which kernels ran: the fast runtime's instruction set (`avx512`, `avx2`, `scalar`,
        /// and why when `CNX_ISA` chose it), or the reference executor's.
        public var kernels: String = ""

        public var medianMs: Double { percentile(0.5) }
        public var p90Ms: Double { percentile(0.9) }
        public var throughput: Double { Double(batch) * 1000 / medianMs }

        func percentile(_ p: Double) -> Double {
            let s = latenciesMs.sorted()
            guard !s.isEmpty else { return 0 }
            let rank = p * Double(s.count - 1)
            let lo = Int(rank.rounded(.down)), hi = Int(rank.rounded(.up))
            return s[lo] + (s[hi] - s[lo]) * (rank - Double(lo))
        }

        public var json: String {
            func f(_ v: Double) -> String { String(format: "%.3f", v) }
            return
                "{\"model\": \"\(model)\", \"runtime\": \"\(runtime)\", \"threads\": \(threads), \"batch\": \(batch), \"input\": \(size), \"iterations\": \(iterations), \"median_ms\": \(f(medianMs)), \"p90_ms\": \(f(p90Ms)), \"min_ms\": \(f(latenciesMs.min() ?? 0)), \"throughput_ips\": \(f(throughput)), \"load_ms\": \(f(loadMs)), \"kernels\": \"\(kernels)\", \"peak_rss_mb\": \(f(peakRSSMB)), \"samples_ms\": [\(latenciesMs.map(f).joined(separator: ", "))]}"
        }

        public var table: String {
            [
                "model:       \(model) (\(runtime))",
                "input:       batch \(batch), \(size[0])x\(size[1]), \(threads) threads, \(iterations) iterations",
                "kernels:     \(kernels)",
                String(format: "latency:     median %.2f ms, p90 %.2f ms, min %.2f ms", medianMs, p90Ms, latenciesMs.min() ?? 0),
                String(format: "throughput:  %.1f images/s", throughput),
                String(format: "load:        %.1f ms", loadMs),
                String(format: "peak memory: %.1f MB", peakRSSMB),
            ].joined(separator: "\n")
        }
    }

    /// Peak resident memory of this process, in MB: VmHWM from /proc/self/status (getrusage's
    /// ru_maxrss can include the process that started this one).
    public static func peakRSSMB() -> Double {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
        {
            return kb / 1024
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    public static func run(model path: String, threads: Int?, batch: Int, iterations: Int, size: Int?) throws -> Result {
        let loadStart = Date()
        let loaded = try ModelLoader.load(path)
        guard let input = loaded.graph.inputs.first else { throw CNXError("\(path): the graph has no input") }
        var hw = [size ?? 224, size ?? 224]
        if size == nil, case .ints(let s)? = loaded.metadata[MetadataKey.inputSize], s.count == 2 { hw = s.map { Int($0) } }
        if let shape = input.shape, shape.count == 4 {
            if let size, let h = shape[2].value, let w = shape[3].value, h != size || w != size {
                throw CNXError(
                    "\(path): the model's input is fixed at \(h)x\(w), so --size \(size) cannot apply; leave --size out to measure it at \(h)x\(w)"
                )
            }
            if let h = shape[2].value { hw[0] = h }
            if let w = shape[3].value { hw[1] = w }
            if let b = shape[0].value, b != batch { throw CNXError("\(path): the model's batch is fixed at \(b)") }
        }
        let x = Converter.randomTensor([batch, 3, hw[0], hw[1]])
        let call: () throws -> Void
        let runtime: String
        var kernels = ""
        let usedThreads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        if loaded.format == "cnx" {
            let model = try Model(graph: loaded.graph, metadata: loaded.metadata, threads: usedThreads)
            let workspace = model.makeWorkspace()
            call = { _ = try model.predict(x, workspace: workspace) }
            runtime = "cnx fast runtime"
            kernels = kernelsInUse()
            if loaded.graph.initializers.values.contains(where: { $0.dtype == .bfloat16 || $0.dtype == .float16 }) {
                kernels += "; half-precision weights: " + halfKernelsInUse()
            }
        } else {
            let executor = ReferenceExecutor(graph: loaded.graph)
            call = { _ = try executor.run([input.name: x]) }
            runtime = "reference executor (unoptimised)"
            kernels = "reference C kernels and OpenBLAS (not the fast runtime's)"
        }
        let loadMs = Date().timeIntervalSince(loadStart) * 1000
        // Warm up: at least 3 runs and half a second, so caches, page tables and the thread pool
        // are settled before the first timed run (at most 50 runs).
        let warmStart = Date()
        var warm = 0
        while warm < 3 || (warm < 50 && Date().timeIntervalSince(warmStart) < 0.5) {
            try call()
            warm += 1
        }
        var times: [Double] = []
        for _ in 0..<iterations {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try call()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return Result(
            model: path, runtime: runtime, threads: usedThreads, batch: batch, size: hw, iterations: iterations,
            latenciesMs: times, loadMs: loadMs, peakRSSMB: peakRSSMB(), kernels: kernels)
    }

    /// The values `CNX_ISA` takes (the kernels' level table, `cnx_cpu.h`), for messages.
    public static let kernelLevels = String(cString: cnx_cpu_level_names())

    /// Whether `name` is a value `CNX_ISA` takes.
    public static func isKernelLevel(_ name: String) -> Bool { cnx_cpu_level(name, nil) != 0 }

    /// The fast kernels' instruction set, and whether `CNX_ISA` lowered it from what the CPU has.
    public static func kernelsInUse() -> String {
        let active = cnx_isa_current()
        var hardware = cnx_isa_detect()
        let name = String(cString: cnx_isa_name(active))
        if let env = ProcessInfo.processInfo.environment["CNX_ISA"], !env.isEmpty {
            // What the CPU has: the detection without the variable's limit.
            unsetenv("CNX_ISA")
            hardware = cnx_isa_detect()
            setenv("CNX_ISA", env, 1)
            if env != name { return "\(name) (CNX_ISA=\(env), but this CPU has \(String(cString: cnx_isa_name(hardware))))" }
            return "\(name) (chosen by CNX_ISA; this CPU has \(String(cString: cnx_isa_name(hardware))))"
        }
        return "\(name) (the best this CPU has)"
    }

    /// The half-precision GEMM path (`cnx_hpath`), and why when it is not the best this CPU has.
    public static func halfKernelsInUse() -> String {
        let active = cnx_hpath_current(), available = cnx_hpath_available()
        let name = String(cString: cnx_hpath_name(active))
        let best = String(cString: cnx_hpath_name(available))
        if let env = ProcessInfo.processInfo.environment["CNX_HPATH"], !env.isEmpty {
            return "\(name) (CNX_HPATH=\(env); this CPU has \(best))"
        }
        if active == CNX_HPATH_AVX512 && available == CNX_HPATH_AVX512_BF16 {
            let ratio = String(format: "%.1f", cnx_hpath_bf16_dot_time_ratio())
            return "\(name), bf16 widened to float32 in the kernel: a vdpbf16ps takes \(ratio)x an FMA's time on this CPU, "
                + "so FMAs multiply faster (CNX_HPATH=avx512bf16 forces the dot product)"
        }
        return active == available ? "\(name) (the best this CPU has)" : "\(name) (this CPU has \(best))"
    }
}
