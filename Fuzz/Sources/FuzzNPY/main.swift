// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzNPY.swift.
import FuzzSupport

runFuzzer { llvmFuzzerTestOneInput($0, $1) }
