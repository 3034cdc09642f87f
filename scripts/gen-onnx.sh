#!/usr/bin/env bash
# Regenerates Sources/CONNX from Formats/onnx.proto with protoc-c (Debian: protobuf-c-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc-c --proto_path=Formats --c_out="$out" Formats/onnx.proto
mkdir -p Sources/CONNX/include
mv "$out/onnx.pb-c.c" Sources/CONNX/onnx.pb-c.c
# The header goes where SwiftPM looks for a C target's public headers; the .c file includes it by its plain name.
mv "$out/onnx.pb-c.h" Sources/CONNX/include/onnx.pb-c.h
