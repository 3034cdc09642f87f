import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model file: producer or metadata, operators, parameters, inputs, outputs, architecture, layers.",
        discussion: """
            Layers are named as --keep-float, quantize --sensitivity and validate --per-layer name \
            them (stem, stages.S.downsample, stages.S.blocks.J and its .pw1/.pw2, head); for a .cnx \
            each is listed with the weight tensors it reads (named as in the source) and the \
            precision of its GEMMs.
            """)

    @Argument(help: "The model file (.onnx, .cnx, .safetensors, .pth, or a timm hub or transformers folder).")
    var model: String

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let loaded = try ModelLoader.load(model)
            print(json ? Report.inspectJSON(loaded, path: model) : Report.inspect(loaded, path: model))
        }
    }
}
