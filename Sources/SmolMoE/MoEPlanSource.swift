import SmolTensor

/// A restructure plan seen as a tensor source: its output names, types (ggml F32/F16/BF16 as the
/// dense types) and shapes; bytes assembled from the underlying source when asked for. Used by
/// the converter and by the engine's loader.
public final class MoEPlanSource: TensorSource, @unchecked Sendable {   // immutable after init
    public let plan: MoEPlan
    public let source: TensorSource
    public let tensorInfos: [TensorInfo]
    private let byName: [String: TensorRef]

    public init(plan: MoEPlan, source: TensorSource) {
        self.plan = plan
        self.source = source
        tensorInfos = plan.tensors.map { ref in
            var i = ref.info
            if case .block(let g) = i.type { i.type = TensorType(ggml: g) }
            return i
        }
        byName = Dictionary(plan.tensors.map { ($0.info.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public var path: String { source.path }

    public func tensorBytes(_ name: String) throws -> TensorBytes {
        guard let ref = byName[name] else {
            throw SmolError(.malformed, file: source.path, at: "tensor '\(name)'", "not in the restructured (\(plan.to.rawValue)) view")
        }
        return try plan.bytes(ref, from: source)
    }

    /// Drops the pages of every input the output was made from.
    public func release(_ name: String) {
        for i in byName[name]?.recipe.inputs ?? [] { source.release(i) }
    }
}
