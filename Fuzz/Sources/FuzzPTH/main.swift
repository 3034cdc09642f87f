// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzPTH.swift.
import FuzzSupport

runFuzzer { fuzzPTH($0, $1) }
