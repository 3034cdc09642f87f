// The driver; the target is `LLVMFuzzerTestOneInput` in FuzzSafetensors.swift.
import FuzzSupport

runFuzzer { fuzzSafetensors($0, $1) }
