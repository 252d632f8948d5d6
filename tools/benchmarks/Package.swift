// swift-tools-version: 6.0
// Benchmarks for smolconv, in their own package so their dependencies never reach users.
//   cd tools/benchmarks && swift run -c release smolconv-bench [--quick]
import PackageDescription

let package = Package(
    name: "smolconv-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "smolconv", path: "../..")],
    targets: [
        // SmolKernels and SmolFormats are not products of the main package; they are reached
        // through SmolConvert's dependency graph (SwiftPM puts every module of a product's graph on
        // the import path).
        .executableTarget(name: "smolconv-bench", dependencies: [.product(name: "SmolConvert", package: "smolconv")]),
    ]
)
