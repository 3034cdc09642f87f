#!/usr/bin/env python3
"""Backbone fixtures (issue #8): a small timm ConvNeXt classifier and the features_only
backbone with the same weights, both exported with the legacy exporter (opset 17, dynamic
batch), with ONNX Runtime's outputs at batch 2.

    .venv-fixtures/bin/python Fixtures/make_backbone.py      # writes Fixtures/backbone/

For the benchmark's backbone rows, a full-size timm convnext_tiny features_only backbone
(randomly weighted, 28 M parameters; dynamic batch, height and width; outputs stage0..stage3),
with ONNX Runtime's stage outputs at 224x224 and 512x512, batch 1:

    .venv-fixtures/bin/python Fixtures/make_backbone.py --full-size [OUTDIR]
        # writes OUTDIR/convnext_tiny_features/ (default Fixtures/large/, git-ignored)
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import randomize_parameters  # noqa: E402

OUT = os.path.join(HERE, "backbone")
DEFAULT_LARGE_OUT = os.path.join(HERE, "large")
FULL_NAME, FULL_SEED, FULL_SIZES = "convnext_tiny_features", 818, (224, 512)
DEPTHS, DIMS, CLASSES = (1, 1, 2, 1), (8, 16, 24, 32), 10


def export(model, path, outputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=outputs,
                          dynamic_axes={"input": {0: "batch_size"}, **{o: {0: "batch_size"} for o in outputs}})


def export_full_size(model, path, outputs):
    """Legacy exporter, opset 17, dynamic batch, height and width (input and every output)."""
    axes = {"input": {0: "batch_size", 2: "height", 3: "width"}}
    for o in outputs:
        axes[o] = {0: "batch_size", 2: f"{o}_height", 3: f"{o}_width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, 224, 224),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=True)


def main_full_size(out_root):
    """The full-size timm convnext_tiny backbone (features_only) for the benchmark's backbone rows."""
    import onnx
    import timm
    torch.manual_seed(0)
    out = os.path.join(os.path.abspath(out_root), FULL_NAME)
    os.makedirs(out, exist_ok=True)
    backbone = timm.create_model("convnext_tiny", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3))
    with torch.no_grad():
        randomize_parameters(backbone, seed=FULL_SEED)
    backbone.eval()
    stages = [f"stage{i}" for i in range(4)]
    path = os.path.join(out, "model.onnx")
    export_full_size(backbone, path, stages)
    onnx.checker.check_model(path)
    params = sum(p.numel() for p in backbone.parameters())
    info = {"model": "timm convnext_tiny, features_only=True, out_indices=(0, 1, 2, 3)", "parameters": params,
            "exporter": "legacy", "opset": 17, "input": ["batch_size", 3, "height", "width"],
            "seed": FULL_SEED, "cases": {}}
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for size in FULL_SIZES:
        x = np.random.default_rng(FULL_SEED * 10 + size).standard_normal((1, 3, size, size)).astype(np.float32)
        np.save(os.path.join(out, f"input_{size}.npy"), x)
        with torch.no_grad():
            feats = backbone(torch.from_numpy(x))
        case = {"input": f"input_{size}.npy", "input_shape": list(x.shape), "outputs": {}}
        for name, value, ref in zip(stages, sess.run(stages, {"input": x}), feats):
            ref = ref.numpy()
            np.save(os.path.join(out, f"expected_{size}_{name}.npy"), value.astype(np.float32))
            rel = float(np.abs(value - ref).max() / np.abs(ref).max())
            case["outputs"][name] = {"expected": f"expected_{size}_{name}.npy", "shape": list(value.shape),
                                     "max_abs": float(np.abs(value).max()), "std": float(value.std()),
                                     "torch_vs_ort_rel": rel}
            assert value.shape == ref.shape, (size, name, value.shape, ref.shape)
            assert rel < 1e-4, (size, name, rel)
            assert value.std() > 1e-3 * np.abs(value).max(), (size, name, "degenerate output")
        info["cases"][str(size)] = case
    with open(os.path.join(out, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-size", nargs="?", const=DEFAULT_LARGE_OUT, default=None, metavar="OUTDIR",
                    help="export the full-size convnext_tiny backbone into OUTDIR/convnext_tiny_features/ "
                         "(default Fixtures/large)")
    args = ap.parse_args()
    if args.full_size:
        main_full_size(args.full_size)
    else:
        main_small()


def main_small():
    import timm
    from timm.models.convnext import ConvNeXt
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    classifier = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=CLASSES, drop_path_rate=0.0)
    randomize_parameters(classifier, seed=808)
    classifier.eval()
    # timm's own features_only path, with the classifier's weights (the head is dropped).
    backbone = timm.create_model("convnext_atto", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3),
                                 depths=DEPTHS, dims=DIMS, conv_mlp=False, drop_path_rate=0.0)
    # The feature wrapper flattens the top-level sequential names: stem.0 -> stem_0, stages.1 -> stages_1.
    state = {}
    for k, v in classifier.state_dict().items():
        if k.startswith("head."):
            continue
        top, _, rest = k.partition(".")
        index, _, tail = rest.partition(".")
        state[f"{top}_{index}.{tail}" if top in ("stem", "stages") else k] = v
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    backbone.eval()
    stages = [f"stage{i}" for i in range(4)]
    export(classifier, os.path.join(OUT, "classifier.onnx"), ["logits"])
    export(backbone, os.path.join(OUT, "backbone.onnx"), stages)
    x = np.random.default_rng(8).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(os.path.join(OUT, "input.npy"), x)
    info = {"depths": DEPTHS, "dims": DIMS, "classes": CLASSES, "input": [2, 3, 64, 64], "outputs": {}}
    with torch.no_grad():
        feats = backbone(torch.from_numpy(x))
    sess = ort.InferenceSession(os.path.join(OUT, "backbone.onnx"), providers=["CPUExecutionProvider"])
    for name, value, ref in zip(stages, sess.run(stages, {"input": x}), feats):
        np.save(os.path.join(OUT, f"expected_{name}.npy"), value.astype(np.float32))
        diff = float(np.abs(value - ref.numpy()).max() / np.abs(ref.numpy()).max())
        info["outputs"][name] = {"shape": list(value.shape), "torch_vs_ort_rel": diff}
        assert diff < 1e-4, (name, diff)
    sess = ort.InferenceSession(os.path.join(OUT, "classifier.onnx"), providers=["CPUExecutionProvider"])
    np.save(os.path.join(OUT, "expected_logits.npy"), sess.run(["logits"], {"input": x})[0].astype(np.float32))
    with open(os.path.join(OUT, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
