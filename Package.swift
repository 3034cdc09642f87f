// swift-tools-version:5.10
import PackageDescription

let package = Package(
    name: "convnext-convert",
    // Linux (x86_64, arm64) is where it is built and tested; the Apple platforms are the oldest
    // whose Foundation has what the code uses. Linux-only settings carry `.when(platforms:)`.
    platforms: [.macOS(.v13), .iOS(.v16)],
    products: [
        .library(name: "CNXRuntime", targets: ["CNXRuntime"]),
        // For applications: the runtime, tensors and .npy, image decoding, preprocessing and
        // class names (what `run IMAGE` needs), behind `import CNXKit`; no importer, no protobuf.
        .library(name: "CNXKit", targets: ["CNXKit"]),
        .library(name: "CNXImport", targets: ["CNXImport"]),
        .library(name: "CNXFormat", targets: ["CNXFormat"]),
        // .npy / .npz arrays and the interrupt-safe cleanup of partial files.
        .library(name: "CNXIO", targets: ["CNXIO"]),
        .library(name: "CNXPasses", targets: ["CNXPasses"]),
        .library(name: "CNXQuantize", targets: ["CNXQuantize"]),
        .library(name: "CNXConvert", targets: ["CNXConvert"]),
        .executable(name: "convnext-convert", targets: ["convnext-convert"]),
        // The C API (Sources/CNXRuntimeC/include/cnx.h) as a shared library: libcnxruntime.
        .library(name: "cnxruntime", type: .dynamic, targets: ["CNXCAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries, through module maps (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Image codecs (Debian: libjpeg62-turbo-dev, libpng-dev).
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        // protobuf-c code generated from Formats/onnx.proto (scripts/gen-onnx.sh); links libprotobuf-c.
        .target(
            name: "CONNX",
            path: "Sources/CONNX",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),
        // Hot loops in C: every kernel is built with optimisation even in debug builds.
        // The runtime's kernels (fast_*, neon_*, int8, dispatch, activations) and their scalar
        // twins: libc and libm only.
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O2", "-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("m", .when(platforms: [.linux]))]
        ),
        // The reference executor's C kernels (convolution, general GEMM, erf/GELU, LayerNorm,
        // reductions): what runs every operation the fast kernels do not cover. Its GEMM is
        // CKernels' packed one, so it too needs libc and libm only.
        .target(
            name: "CReferenceKernels",
            dependencies: ["CKernels"],
            cSettings: [.unsafeFlags(["-O2", "-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("m", .when(platforms: [.linux]))]
        ),
        // SHA-256 (SHA extensions when present) and CRC-32 in plain C, for the file format: libc only.
        .target(name: "CHash", cSettings: [.unsafeFlags(["-O2"])]),
        // The IR and its utilities (tensors, graph, shape inference, verifier): no system library.
        .target(name: "CNXGraph"),
        // File I/O beside the IR: .npy/.npz arrays and the interrupt-safe cleanup of partial files.
        .target(name: "CNXIO", dependencies: ["CNXGraph", "CHash"]),
        .target(name: "CNXImport", dependencies: ["CNXGraph", "CNXFormat", "CONNX", "CZlib"]),
        .target(name: "CNXFormat", dependencies: ["CNXGraph", "CNXIO", "CHash"]),
        // The reference executor and kernels: constant folding, verification and every operation the
        // fast executor does not fuse. Below both the passes and the runtime.
        .target(name: "CNXReference", dependencies: ["CNXGraph", "CKernels", "CReferenceKernels"]),
        .target(name: "CNXRuntime", dependencies: ["CNXGraph", "CNXFormat", "CNXReference", "CKernels", "CReferenceKernels"]),
        .target(name: "CNXPasses", dependencies: ["CNXGraph", "CNXReference"]),
        // The C API: its header and the plain-C parts (CNXRuntimeC), the rest in Swift over Model.
        .target(name: "CNXRuntimeC"),
        .target(name: "CNXCAPI", dependencies: ["CNXRuntimeC", "CNXRuntime", "CNXFormat", "CNXGraph"]),
        .target(name: "CNXQuantize", dependencies: ["CNXGraph", "CNXReference", "CNXRuntime", "CNXFormat"]),
        .target(name: "CNXValidate", dependencies: ["CNXGraph", "CNXIO", "CNXFormat", "CNXReference", "CNXRuntime", "CJPEG", "CPNG"]),
        .target(name: "CNXKit", dependencies: ["CNXGraph", "CNXIO", "CNXFormat", "CNXRuntime", "CNXValidate"]),
        // The README's Swift example, built with the package and run by Tests/CLITests.
        .executableTarget(name: "classify-example", dependencies: ["CNXKit"], path: "Examples/Classify"),
        // A program that links only the runtime product: scripts/ldd-test.sh checks its libraries.
        .executableTarget(name: "runtime-only-example", dependencies: ["CNXRuntime"], path: "Examples/RuntimeOnly"),
        // What the command-line tool does, as library functions: one per command.
        .target(name: "CNXConvert", dependencies: ["CKernels", "CReferenceKernels", "CNXGraph", "CNXIO", "CNXReference", "CNXImport", "CNXFormat", "CNXPasses", "CNXRuntime", "CNXValidate", "CNXQuantize"]),
        .executableTarget(
            name: "convnext-convert",
            dependencies: [
                "CNXGraph", "CNXIO", "CNXImport", "CNXRuntime", "CNXFormat", "CNXPasses", "CNXConvert", "CNXValidate", "CNXQuantize",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "CNXTestSupport", dependencies: ["CNXGraph"], path: "Tests/CNXTestSupport"),
        .testTarget(name: "CNXGraphTests", dependencies: ["CNXGraph", "CNXImport", "CNXTestSupport"]),
        .testTarget(name: "CNXImportTests", dependencies: ["CNXImport", "CNXGraph", "CNXIO", "CNXReference", "CNXConvert", "CNXRuntime", "CNXPasses", "CNXTestSupport"]),
        .testTarget(name: "CNXRuntimeTests", dependencies: ["CNXRuntime", "CNXReference", "CNXImport", "CNXGraph", "CNXIO", "CNXTestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["CNXGraph", "CNXIO", "CNXReference", "CNXFormat", "CNXTestSupport", "CNXConvert", "CNXImport", "CNXRuntime"]),
        .testTarget(name: "CNXFormatTests", dependencies: ["CNXFormat", "CNXGraph", "CNXIO", "CNXImport", "CNXConvert", "CNXQuantize", "CNXTestSupport"]),
        .testTarget(name: "CNXPassesTests", dependencies: ["CNXPasses", "CNXReference", "CNXIO", "CNXRuntime", "CNXImport", "CNXGraph", "CNXTestSupport"]),
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels"]),
        .testTarget(name: "CReferenceKernelsTests", dependencies: ["CReferenceKernels"]),
        .testTarget(name: "CHashTests", dependencies: ["CHash", "CZlib"]),
        .testTarget(name: "CNXQuantizeTests", dependencies: ["CNXQuantize", "CNXReference", "CNXIO", "CNXRuntime", "CNXPasses", "CNXImport", "CNXGraph", "CNXConvert", "CNXTestSupport"]),
        .testTarget(name: "CNXValidateTests", dependencies: ["CNXValidate", "CNXGraph", "CNXIO", "CNXFormat", "CNXImport", "CNXRuntime", "CNXConvert", "CNXTestSupport"]),
        .testTarget(name: "CAPITests", dependencies: ["CNXGraph", "CNXIO", "CNXTestSupport"]),
        .testTarget(name: "ReliabilityTests", dependencies: ["CNXImport", "CNXFormat", "CNXIO", "CNXRuntime", "CNXGraph", "CNXConvert", "CNXTestSupport"],
                    exclude: ["Crashers"]),
    ]
)
