// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzNPY.swift.
import FuzzSupport

runFuzzer { fuzzNPY($0, $1) }
