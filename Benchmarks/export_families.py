#!/usr/bin/env python3
"""Full-size, randomly weighted ConvNeXt family models (timm and transformers) for the family benchmark.

Run with the fixtures venv (torch, timm; see Fixtures/setup_venv.sh), normally through
Benchmarks/run_families.sh:

    .venv-fixtures/bin/python Benchmarks/export_families.py [--out Fixtures/large/families]
                                                            [--only NAME,NAME] [--list] [--large]
    .venv-fixtures/bin/python Benchmarks/export_families.py --bench [--only convnext_base_384]

For each family: timm.create_model(name, pretrained=False, **kwargs) (or, for the `hf_` families,
transformers' ConvNextForImageClassification / ConvNextV2ForImageClassification from a config with
the given fields, returning the logits), every parameter randomised
away from its initial value (seeded), exported by torch's legacy (TorchScript) exporter at opset 17,
batch 1 (dynamic batch axis), 224 x 224, into OUT/<family>/:

    model.onnx      the export (input `input` [batch_size, 3, 224, 224], output `logits`)
    input.npy       a seeded standard-normal input, 1 x 3 x 224 x 224
    torch.npy       PyTorch's output on it (float32, eval mode)
    meta.json       timm name, kwargs, parameter count, ONNX Runtime's error against PyTorch

Families whose model.onnx and meta.json exist (with the same definition) are skipped.

--bench makes the speed benchmark's models the same way instead (Benchmarks/run.sh calls it): the
ConvNeXt-B at 384 x 384 (the paper's fine-tuning resolution) into Fixtures/large/convnext_base_384/,
with input.npy / input2.npy (1 and 2 samples) and ONNX Runtime's outputs on them, expected.npy /
expected2.npy, which bench.py verifies every row against. (ConvNeXt-T at 224 is
Fixtures/make_fixtures.py --full-size's convnext_tiny_op17.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "Fixtures", "large", "families")
OPSET = 17
SIZE = 224

# name -> (timm model, kwargs, what the family exercises, randomise GRN (False: zero GRN))
FAMILIES = {
    "convnextv2_atto": ("convnextv2_atto", {}, "V2, GRN inside the conv MLP (channels first)", True),
    "convnextv2_nano": ("convnextv2_nano", {}, "V2, GRN inside the conv MLP (channels first)", True),
    "convnextv2_tiny_zero_grn": ("convnextv2_tiny", {}, "V2 with GRN gamma and beta zero, as initialised", False),
    "convnext_atto_rms": ("convnext_atto_rms", {}, "RmsNorm2d everywhere, conv MLP", True),
    "convnext_zepto_rms": ("convnext_zepto_rms", {}, "SimpleNorm2d everywhere, conv MLP", True),
    "convnext_tiny_gelu_tanh": ("convnext_tiny", {"act_layer": "gelu_tanh"}, "tanh-approximated GELU", True),
    "convnext_tiny_silu": ("convnext_tiny", {"act_layer": "silu"}, "SiLU", True),
    "convnext_tiny_hnf": ("convnext_tiny_hnf", {}, "head norm first", True),
    "convnext_atto_ols": ("convnext_atto_ols", {}, "overlapping (tiered) stem", True),
    "test_convnext": ("test_convnext", {}, "tanh GELU, LayerNorm eps 1e-5, tiny widths", True),
    "convnext_tiny_mlp_head": ("convnext_tiny", {"head_hidden_size": 768},
                               "MLP head (head_hidden_size), as convnext_large_mlp", True),
}
# transformers' models (the facebook/convnext-tiny-224 and convnextv2-tiny shapes): name -> (class
# name, config fields, what the family exercises, randomise GRN). Built with random weights.
TRANSFORMERS = {
    "hf_convnext_tiny": ("ConvNextForImageClassification",
                         {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768], "num_labels": 1000},
                         "transformers ConvNeXt V1 (its LayerNorm modules, pooled norm eps 1e-12)", True),
    "hf_convnextv2_tiny": ("ConvNextV2ForImageClassification",
                           {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768], "num_labels": 1000},
                           "transformers ConvNeXt V2 (GRN channels last)", True),
}
FAMILIES.update(TRANSFORMERS)
# convnext_large_mlp itself: 200 M parameters (an 800 MB export, about 0.5 s per image for ONNX
# Runtime on 2 threads); only with --large.
LARGE = {
    "convnext_large_mlp": ("convnext_large_mlp", {}, "MLP head, the full-size model", True),
}
# The speed benchmark's models (--bench): name -> (timm model, kwargs, about, random GRN, size).
BENCH_MODELS = {
    "convnext_base_384": ("convnext_base", {}, "ConvNeXt-B at the paper's fine-tuning resolution", True, 384),
}
DEFAULT_BENCH_OUT = os.path.join(ROOT, "Fixtures", "large")
SEED = 1234


def randomize(model, seed: int, random_grn: bool) -> None:
    """Every parameter away from its initial value: conv / linear weights N(0, 1 / fan_in), their
    biases N(0, 0.1^2); norm weights of magnitude U(0.5, 1.5) (one in five negative), norm biases
    N(0, 0.3^2); layer scale U(0.1, 1.0); GRN gamma and beta N(0, 0.5^2), or zero when the family
    is about zero GRN. Refuses a parameter it does not know."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def randn(p):
        return torch.randn(p.shape, generator=gen)

    def rand(p):
        return torch.rand(p.shape, generator=gen)

    def value(module, p_name, p, where):
        kind = type(module).__name__
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return randn(p) / math.sqrt(p[0].numel()) if p_name == "weight" else 0.1 * randn(p)
        if "GlobalResponseNorm" in kind or kind.endswith("GRN"):
            return 0.5 * randn(p) if random_grn else torch.zeros_like(p)
        if "Norm" in kind and p_name == "weight":  # LayerNorm(2d), RmsNorm(2d), SimpleNorm(2d)
            return (rand(p) + 0.5) * torch.where(rand(p) < 0.2, -1.0, 1.0)
        if "Norm" in kind and p_name == "bias":
            return 0.3 * randn(p)
        if p_name in ("gamma", "layer_scale", "layer_scale_parameter"):
            return 0.1 + 0.9 * rand(p)
        raise RuntimeError(f"do not know how to randomise {where} ({kind})")

    count = 0
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            for p_name, p in module.named_parameters(recurse=False):
                p.copy_(value(module, p_name, p, f"{mod_name}.{p_name}"))
                count += 1
    if count != len(list(model.parameters())):
        raise RuntimeError("some parameters were not randomised")


def transformers_model(class_name: str, fields: dict):
    """transformers' image classifier with the given config fields, wrapped to return the logits
    tensor (the export's one output)."""
    import torch
    import transformers

    config_class = {"ConvNextForImageClassification": transformers.ConvNextConfig,
                    "ConvNextV2ForImageClassification": transformers.ConvNextV2Config}[class_name]
    inner = getattr(transformers, class_name)(config_class(**fields))

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(pixel_values=x).logits

    return Logits()


def export(name: str, spec, out_root: str, size: int = SIZE, expected: bool = False) -> dict:
    import numpy as np
    import onnxruntime as ort
    import timm
    import torch

    timm_name, kwargs, about, random_grn = spec[:4]
    hf = name in TRANSFORMERS
    definition = {"timm_model": timm_name, "kwargs": kwargs, "random_grn": random_grn, "seed": SEED,
                  "opset": OPSET, "size": size, "exporter": "legacy", "randomiser": 2}
    if hf:
        definition = {"transformers_model": timm_name, "config": kwargs, "random_grn": random_grn,
                      "seed": SEED, "opset": OPSET, "size": size, "exporter": "legacy", "randomiser": 2}
    if expected:
        definition["expected"] = "ONNX Runtime on input.npy (1 sample) and input2.npy (2)"
    out = os.path.join(out_root, name)
    meta_path, onnx_path = os.path.join(out, "meta.json"), os.path.join(out, "model.onnx")
    if os.path.exists(meta_path) and os.path.exists(onnx_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("definition") == definition:
            print(f"{name}: up to date")
            return meta
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    model = (transformers_model(timm_name, kwargs) if hf else timm.create_model(timm_name, pretrained=False, **kwargs)).eval()
    randomize(model, SEED, random_grn)
    x = torch.from_numpy(np.random.default_rng(SEED).standard_normal((1, 3, size, size), dtype=np.float32))
    with torch.no_grad():
        y = model(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), onnx_path, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch_size"}, "logits": {0: "batch_size"}},
                          do_constant_folding=True)
    np.save(os.path.join(out, "input.npy"), x.numpy())
    np.save(os.path.join(out, "torch.npy"), y)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"input": x.numpy()})[0]
    err = float(np.abs(y_ort - y).max() / max(np.abs(y).max(), 1e-30))
    if expected:
        # The benchmark's verification data: ONNX Runtime's outputs, as make_fixtures.py's are.
        x2 = np.random.default_rng(SEED + 1).standard_normal((2, 3, size, size), dtype=np.float32)
        np.save(os.path.join(out, "expected.npy"), y_ort)
        np.save(os.path.join(out, "input2.npy"), x2)
        np.save(os.path.join(out, "expected2.npy"), sess.run(None, {"input": x2})[0])
    meta = {"definition": definition, "about": about,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "ort_vs_torch_rel": err, "torch": torch.__version__, "timm": timm.__version__,
            **({"transformers": __import__("transformers").__version__} if hf else {}),
            "onnxruntime": ort.__version__, "export_s": round(time.perf_counter() - t0, 1)}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: {meta['parameters'] / 1e6:.1f} M parameters, ONNX Runtime vs PyTorch {err:.2e}, "
          f"{meta['export_s']} s")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", default=None, help="comma-separated family names")
    ap.add_argument("--large", action="store_true", help="also convnext_large_mlp (200 M parameters)")
    ap.add_argument("--list", action="store_true", help="print the family names and exit")
    ap.add_argument("--bench", action="store_true",
                    help="the speed benchmark's models instead (default --out Fixtures/large)")
    args = ap.parse_args(argv)
    if args.bench:
        out = os.path.abspath(args.out if args.out != DEFAULT_OUT else DEFAULT_BENCH_OUT)
        names = [n.strip() for n in (args.only or ",".join(BENCH_MODELS)).split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCH_MODELS]
        if unknown:
            print(f"unknown benchmark models: {', '.join(unknown)} (known: {', '.join(BENCH_MODELS)})", file=sys.stderr)
            return 2
        for n in names:
            export(n, BENCH_MODELS[n], out, size=BENCH_MODELS[n][4], expected=True)
        return 0
    families = dict(FAMILIES, **(LARGE if args.large else {}))
    if args.list:
        for n, (t, kw, about, _) in families.items():
            print(f"{n}\t{t} {json.dumps(kw)}\t{about}")
        return 0
    names = list(families)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in families and n not in LARGE]
        if unknown:
            print(f"unknown families: {', '.join(unknown)} (known: {', '.join(list(FAMILIES) + list(LARGE))})",
                  file=sys.stderr)
            return 2
    status = 0
    for n in names:
        try:
            export(n, families.get(n) or LARGE[n], os.path.abspath(args.out))
        except Exception as e:  # one family failing (timm refuses a kwarg, ...) does not stop the rest
            print(f"{n}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
