// swift-tools-version: 6.0
// smolconv: read, convert, quantize and verify small and MoE language-model checkpoints.
//
// Layers (a module imports only the layers below it):
//   C shims → SmolTensor → SmolKernels, SmolFormats → SmolQuant, SmolTokenizer → SmolModels
//   → SmolMoE (expert layouts) → SmolEngine → SmolTrain, SmolCalibration → SmolConvert (pipelines) → smolconv (CLI: the only module that parses arguments or prints)
import PackageDescription

let package = Package(
    name: "smolconv",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "smolconv", targets: ["smolconv"]),
        .library(name: "SmolConvert", targets: ["SmolConvert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // HDF5 (serial): calibration statistics files. Debian's headers sit in hdf5/serial; pkg-config says so.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .target(name: "SmolTensor"),
        // AVX2 fused dequantize-and-dot kernels, runtime-dispatched (see its kernels.c for the measurement).
        .target(name: "CSmolKernels"),
        .target(name: "SmolKernels", dependencies: ["SmolTensor", "COpenBLAS", "CSmolKernels"]),
        .target(name: "SmolFormats", dependencies: ["SmolTensor", "CZstd"]),
        .target(name: "SmolQuant", dependencies: ["SmolTensor"]),
        .target(name: "SmolTokenizer", dependencies: ["SmolTensor", "SmolFormats"]),
        .target(name: "SmolModels", dependencies: ["SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant"]),
        // MoE expert layouts (per-expert, trainable, GGUF): byte-exact restructuring with accounting.
        // Above SmolModels because it reads ModelConfig and extends its GGUF name tables.
        .target(name: "SmolMoE", dependencies: ["SmolTensor", "SmolFormats", "SmolQuant", "SmolModels"]),
        .target(name: "SmolEngine", dependencies: ["SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant", "SmolTokenizer", "SmolModels", "SmolMoE"]),
        // LoRA / QLoRA training on the reference engine: backward ops, adapters, AdamW, PEFT I/O.
        .target(name: "SmolTrain", dependencies: ["SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant", "SmolTokenizer", "SmolModels", "SmolMoE", "SmolEngine"]),
        // Calibration: statistics collection (engine hooks), HDF5 stats files, imatrix / GPTQ / AWQ.
        .target(name: "SmolCalibration", dependencies: ["CHDF5", "SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant", "SmolTokenizer", "SmolModels", "SmolMoE", "SmolEngine"]),
        .target(name: "SmolConvert", dependencies: ["SmolTensor", "SmolFormats", "SmolQuant", "SmolTokenizer", "SmolModels", "SmolMoE", "SmolEngine", "SmolTrain", "SmolCalibration"]),
        .executableTarget(name: "smolconv", dependencies: [
            "SmolConvert", "SmolEngine", "SmolTrain", "SmolCalibration", "SmolTensor", "SmolFormats", "SmolQuant", "SmolTokenizer", "SmolModels", "SmolMoE",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "SmolTestSupport", path: "Tests/SmolTestSupport"),
        .testTarget(name: "SmolTensorTests", dependencies: ["SmolTestSupport", "SmolTensor"]),
        .testTarget(name: "SmolFormatsTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats"]),
        .testTarget(name: "SmolQuantTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolQuant"]),
        .testTarget(name: "SmolTokenizerTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolTokenizer"]),
        .testTarget(name: "SmolModelsTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolModels"]),
        .testTarget(name: "SmolMoETests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolModels", "SmolMoE"]),
        .testTarget(name: "SmolConvertTests", dependencies: ["SmolTestSupport", "SmolConvert", "SmolTensor", "SmolFormats", "SmolModels"]),
        .testTarget(name: "SmolKernelsTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolKernels"]),
        .testTarget(name: "SmolEngineTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant", "SmolModels", "SmolMoE", "SmolEngine"]),
        .testTarget(name: "SmolTrainTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolKernels", "SmolQuant", "SmolModels", "SmolMoE", "SmolEngine", "SmolTrain"]),
        .testTarget(name: "SmolCalibrationTests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "SmolQuant", "SmolModels", "SmolEngine", "SmolCalibration"]),
        .testTarget(name: "CLITests", dependencies: ["SmolTestSupport", "SmolTensor", "SmolFormats", "smolconv"]),
    ]
)
