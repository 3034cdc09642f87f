// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzONNX.swift.
import FuzzSupport

runFuzzer { llvmFuzzerTestOneInput($0, $1) }
