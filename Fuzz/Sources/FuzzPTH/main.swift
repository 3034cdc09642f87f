// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzPTH.swift.
import FuzzSupport

runFuzzer { llvmFuzzerTestOneInput($0, $1) }
