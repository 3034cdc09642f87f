#!/bin/sh
# Writes Fixtures/cnx/int8_v1_0.cnx: an int8 file in the format as convnext-convert 0.2.0 wrote
# it (version field 1.0; weight scales as node attributes `w<L>_scales`), kept so that every
# later reader is tested on it (Tests/CNXQuantizeTests/LegacyInt8FileTests.swift).
# It was made once, at commit ff9edf2 (convnext-convert 0.2.0), from the repository root:
#
#     git worktree add /tmp/cnx-0.2.0 ff9edf2 && cd /tmp/cnx-0.2.0 && swift build
#
# then this script with CNX=/tmp/cnx-0.2.0/.build/debug/convnext-convert. Running it with a
# later convnext-convert writes the later format, which is not what the fixture is for.
set -eu
CNX=${CNX:-.build/debug/convnext-convert}
"$CNX" convert Fixtures/families/convnextv2_atto_op17/model.onnx Fixtures/cnx/int8_v1_0.cnx \
    --int8 --calibration Fixtures/families/convnextv2_atto_op17/input.npy
"$CNX" run Fixtures/cnx/int8_v1_0.cnx --input Fixtures/families/convnextv2_atto_op17/input.npy --output Fixtures/cnx/int8_v1_0.output-0.2.0.npy
