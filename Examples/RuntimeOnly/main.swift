// A program that links the runtime alone (the CNXRuntime product: no importer, no image codecs,
// no .npy reader): opens a .cnx, runs it once on a deterministic input and prints the output's
// shape and a few values. scripts/ldd-test.sh builds it and checks its shared libraries.
//
//   swift run runtime-only-example Fixtures/cnx/tiny.cnx
import CNXGraph
import CNXRuntime
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    FileHandle.standardError.write(Data("usage: runtime-only-example MODEL.cnx\n".utf8))
    exit(1)
}
do {
    let model = try Model(path: arguments[1], threads: 1)
    guard let input = model.graph.inputs.first, let dims = input.shape else {
        throw CNXError("\(arguments[1]): the model declares no input shape")
    }
    // Symbolic sizes (the batch) become 1; a ramp over [-1, 1] stands in for an image.
    let shape = dims.map { dim -> Int in if case .fixed(let n) = dim { return n } else { return 1 } }
    let count = shape.reduce(1, *)
    let x = Tensor(floats: (0..<count).map { Float($0 % 97) / 48 - 1 }, shape: shape)
    let y = try model.predict(x)
    let head = y.floats.prefix(5).map { String(format: "%.6f", $0) }.joined(separator: " ")
    print("\(model.inputName) \(shape) -> \(model.outputNames.first ?? "?") \(y.shape): \(head)")
} catch let e as CNXError {
    FileHandle.standardError.write(Data("runtime-only-example: \(e.message)\n".utf8))
    exit(1)
}
