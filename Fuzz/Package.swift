// swift-tools-version:5.10
// libFuzzer targets for the model-file readers (issue #7). A separate package so the main build
// never needs the fuzzer runtime. Build and run through scripts/fuzz.sh:
//
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address --package-path Fuzz
//   bash scripts/fuzz.sh onnx 600
import PackageDescription

let package = Package(
    name: "convnext-convert-fuzz",
    dependencies: [
        .package(name: "convnext-convert", path: ".."),
    ],
    targets: [
        // Writes each input to a private temporary file, for the readers that take a path.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Sources/FuzzSupport"),
        // The declaration of libFuzzer's LLVMFuzzerRunDriver.
        .target(name: "CLibFuzzer", path: "Sources/CLibFuzzer"),
        .executableTarget(
            name: "FuzzONNX",
            dependencies: ["FuzzSupport", .product(name: "CNXImport", package: "convnext-convert")],
            path: "Sources/FuzzONNX"
        ),
        .executableTarget(
            name: "FuzzCNX",
            dependencies: [
                "FuzzSupport",
                .product(name: "CNXFormat", package: "convnext-convert"),
                .product(name: "CNXRuntime", package: "convnext-convert"),
            ],
            path: "Sources/FuzzCNX"
        ),
        .executableTarget(
            name: "FuzzNPY",
            // NPY lives in CNXIO.
            dependencies: ["FuzzSupport", .product(name: "CNXIO", package: "convnext-convert")],
            path: "Sources/FuzzNPY"
        ),
        // Checkpoints: the reader, then the graph built from the state dict (CheckpointReader.load).
        .executableTarget(
            name: "FuzzSafetensors",
            dependencies: ["FuzzSupport", .product(name: "CNXImport", package: "convnext-convert")],
            path: "Sources/FuzzSafetensors"
        ),
        .executableTarget(
            name: "FuzzPTH",
            dependencies: ["FuzzSupport", .product(name: "CNXImport", package: "convnext-convert")],
            path: "Sources/FuzzPTH"
        ),
    ]
)
