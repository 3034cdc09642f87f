// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzCNX.swift.
import FuzzSupport

runFuzzer { fuzzCNX($0, $1) }
