// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzONNX.swift.
import FuzzSupport

runFuzzer { fuzzONNX($0, $1) }
