import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model file: producer or metadata, operators, parameters, inputs, outputs, architecture.")

    @Argument(help: "The model file (.onnx or .cnx).")
    var model: String

    func run() throws {
        try reportingErrors {
            let loaded = try ModelLoader.load(model)
            print(Report.inspect(loaded, path: model))
        }
    }
}
