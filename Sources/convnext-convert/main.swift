import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

extension ParsableCommand {
    /// Runs `body`, turning the library's errors into one line on stderr and exit status 1.
    func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as CNXError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

struct ConvnextConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convnext-convert",
        abstract: "Convert, inspect, run and benchmark ConvNeXt models exported from PyTorch.",
        discussion: """
        Reads ONNX files (with the external-data file torch writes beside them) and .cnx files.
          convnext-convert model.onnx model.cnx          optimise and write a .cnx (convert is the default)
          convnext-convert quantize --int8 model.onnx model.int8.cnx --calibration calib.npy
          convnext-convert inspect model.cnx             what a model file holds
          convnext-convert run model.cnx --input x.npy --output logits.npy
          convnext-convert bench model.cnx --threads 2 --batch 1
        """,
        subcommands: [Convert.self, Quantize.self, Inspect.self, Run.self, Bench.self, ValidateGroup.self],
        defaultSubcommand: Convert.self
    )
}

ConvnextConvert.main()
