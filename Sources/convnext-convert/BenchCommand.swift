import ArgumentParser
import CKernels
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure latency and throughput of a model on random input.",
        discussion: """
            A .cnx runs on the fast runtime, with the best kernels this CPU has (CNX_ISA=scalar, \
            avx2 or avx512 chooses lower ones); other model files run on the reference executor, \
            unoptimised. The report says which kernels ran. Comparisons with ONNX Runtime are \
            measured by Benchmarks/run.sh.
            """)

    @Argument(help: "The model file (.cnx, or any other model file the tool reads).")
    var model: String

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Batch size.")
    var batch = 1

    @Option(name: .long, help: "Timed iterations (after at least 3 warm-up runs and half a second).")
    var iterations = 20

    @Option(
        name: .long, help: "Input height and width, for a model whose input size is not fixed (default: the size it records, else 224).")
    var size: Int?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let size, size < 32 || size % 32 != 0 { throw ValidationError("--size must be a positive multiple of 32") }
    }

    func run() throws {
        try reportingErrors {
            let r = try Benchmark.run(model: model, threads: threads, batch: batch, iterations: iterations, size: size)
            if json {
                print(Self.withISA(r.json))
            } else {
                print(r.table)
            }
        }
    }

    /// The JSON object with `"isa"`: the path each kernel family's dispatcher picked in this process
    /// (after the run, so after CNX_ISA / CNX_HPATH and the CPU's features were read): float32
    /// (cnx_isa), int8 (cnx_qisa) and half precision (cnx_hpath). Benchmarks/bench.py shows them.
    static func withISA(_ json: String) -> String {
        let float = String(cString: cnx_isa_name(cnx_isa_current()))
        let int8 = String(cString: cnx_qisa_name(cnx_qisa_current()))
        let half = String(cString: cnx_hpath_name(cnx_hpath_current()))
        guard json.hasSuffix("}") else { return json }
        return String(json.dropLast()) + ", \"isa\": {\"float\": \"\(float)\", \"int8\": \"\(int8)\", \"half\": \"\(half)\"}}"
    }
}
