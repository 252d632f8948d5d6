import SmolTensor
import COpenBLAS

/// Single-precision GEMM through OpenBLAS (placeholder until the engine lands).
func _blasLinked() -> Int32 { Int32(openblas_get_num_threads()) }
