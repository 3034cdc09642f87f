// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzSafetensors.swift.
import FuzzSupport

runFuzzer { llvmFuzzerTestOneInput($0, $1) }
