#!/usr/bin/env python3
"""Small ONNX exports of every ConvNeXt family the converter must fuse completely.

Usage (from the repository root):
    .venv-fixtures/bin/python Fixtures/make_families.py             # all -> Fixtures/families/
    .venv-fixtures/bin/python Fixtures/make_families.py --only NAME...

Each family is built the way people get it (timm's registered constructor, with the depths and
widths shrunk; or Hugging Face transformers' classes with a small config), every parameter is
randomised away from its initial value (conv/linear weights and biases, every norm's weight and
bias, layer scale, GRN), except for the fixtures that are about the initial value (GRN gamma and
beta at zero, as a freshly initialised or `.fcmae`-style V2 has them). Exported with the legacy
exporter (opset 17, a few at 13) and the dynamo exporter, which shares, folds and renames
differently.

Each folder families/<name>/ holds:
    model.onnx (+ model.onnx.data for the dynamo exporter)
    input.npy              float32 NCHW input (standard normal)
    torch_expected.npy     PyTorch eager output: the oracle the tests compare with
    ort_expected.npy       ONNX Runtime CPU output (a check on the export itself)
    input2.npy, torch_expected2.npy, ort_expected2.npy   second batch size for dynamic-batch exports
and families/manifest.json describes them all.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import export_dynamo, export_legacy, inspect_model, make_input, ort_session  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "families")
REL_TOLERANCE = 1e-4

DEPTHS = (1, 1, 2, 1)
DIMS = (8, 16, 24, 32)


# ---------------------------------------------------------------------------
# Parameter randomisation
# ---------------------------------------------------------------------------

def _kind(module: nn.Module, param: str) -> str:
    """What a parameter is, from its module's class: conv, norm, grn or layer scale."""
    cls = type(module).__name__
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return "conv"
    if "GRN" in cls or "GlobalResponseNorm" in cls:
        return "grn"
    if param in ("gamma", "layer_scale", "layer_scale_parameter"):
        return "scale"
    if "Norm" in cls:
        return "norm"
    return "unknown"


@torch.no_grad()
def randomize(model: nn.Module, seed: int, zero_grn: bool = False) -> dict:
    """Every parameter away from its initial value; GRN at exactly zero when `zero_grn`.
    Returns how many parameters of each kind were set."""
    gen = torch.Generator().manual_seed(seed)
    counts: dict[str, int] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            kind = _kind(module, p_name)
            full = f"{mod_name}.{p_name}"
            if kind == "conv":
                if p_name == "weight":
                    p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif kind == "norm":
                if p_name == "weight":
                    # magnitudes 0.5 to 1.5, about one in five negative
                    mag = torch.rand(p.shape, generator=gen) + 0.5
                    sign = torch.where(torch.rand(p.shape, generator=gen) < 0.2, -1.0, 1.0)
                    p.copy_(mag * sign)
                elif p_name == "bias":
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
                else:
                    raise RuntimeError(f"unexpected norm parameter {full}")
            elif kind == "grn":
                p.copy_(torch.zeros(p.shape) if zero_grn else torch.randn(p.shape, generator=gen) * 0.5)
            elif kind == "scale":
                p.copy_(torch.rand(p.shape, generator=gen) * 0.9 + 0.1)
            else:
                raise RuntimeError(f"don't know how to randomise {full} of {type(module).__name__}")
            counts[kind] = counts.get(kind, 0) + 1
    return counts


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------

def timm_model(name: str, num_classes: int = 10, **overrides) -> Callable[[], nn.Module]:
    """timm's registered constructor, shrunk: its own model_args (eps, activation, norm, stem,
    kernel sizes, head) stay unless overridden here."""
    def build():
        import timm
        args = dict(depths=DEPTHS, dims=DIMS)
        args.update(overrides)
        return timm.create_model(name, pretrained=False, num_classes=num_classes, drop_path_rate=0.0, **args)
    return build


def timm_custom(num_classes: int = 10, **kwargs) -> Callable[[], nn.Module]:
    """timm's ConvNeXt class with arguments no registered model combines."""
    def build():
        from timm.models.convnext import ConvNeXt
        args = dict(depths=DEPTHS, dims=DIMS)
        args.update(kwargs)
        return ConvNeXt(num_classes=num_classes, drop_path_rate=0.0, **args)
    return build


class LogitsOf(nn.Module):
    """A transformers image classifier as a tensor -> tensor module (its `.logits`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def hf_model(version: int, num_classes: int = 10) -> Callable[[], nn.Module]:
    def build():
        import transformers as tf
        common = dict(hidden_sizes=list(DIMS), depths=list(DEPTHS), num_labels=num_classes, image_size=64)
        if version == 1:
            model = tf.ConvNextForImageClassification(tf.ConvNextConfig(**common))
        else:
            model = tf.ConvNextV2ForImageClassification(tf.ConvNextV2Config(**common))
        return LogitsOf(model.eval())
    return build


@dataclass
class Family:
    name: str
    family: str          # what the tests group by
    source: str          # timm | transformers
    model: str           # timm model name or transformers class
    build: Callable[[], nn.Module]
    exporter: str = "legacy"
    opset: int | None = 17
    input_shape: tuple = (1, 3, 64, 64)
    input2_shape: tuple | None = None
    dynamic_batch: bool = False
    dynamic_hw: bool = False
    zero_grn: bool = False
    seed: int = 0
    # Facts about the model for the tests and the README.
    activation: str = "gelu"
    norm: str = "layer"
    eps: float = 1e-6
    head_eps: float | None = None  # the head's norm, when it differs from the others'
    head: str = "pool-norm-fc"
    stem: str = "patch"
    notes: str = ""
    overrides: dict = field(default_factory=dict)


def families() -> list[Family]:
    f = []
    add = f.append
    # ConvNeXt V2 small models: conv_mlp, so the GRN works channels-first between 1x1 convs.
    for exporter, opset, suffix in (("legacy", 17, "op17"), ("legacy", 13, "op13"), ("dynamo", None, "dynamo")):
        add(Family(f"convnextv2_atto_{suffix}", "v2-convmlp", "timm", "convnextv2_atto", timm_model("convnextv2_atto"),
                   exporter=exporter, opset=opset, seed=1100 + (opset or 0)))
    add(Family("convnextv2_atto_zero_grn_op17", "v2-zero-grn", "timm", "convnextv2_atto", timm_model("convnextv2_atto"),
               zero_grn=True, seed=1201, notes="GRN gamma and beta zero, as initialised"))
    # Larger V2 (Linear MLP, channels-last GRN) at initialisation: GRN gamma = beta = 0.
    add(Family("convnextv2_tiny_zero_grn_op17", "v2-zero-grn", "timm", "convnextv2_tiny", timm_model("convnextv2_tiny"),
               zero_grn=True, seed=1202, notes="GRN gamma and beta zero, as initialised"))
    add(Family("convnextv2_tiny_zero_grn_dynamo", "v2-zero-grn", "timm", "convnextv2_tiny", timm_model("convnextv2_tiny"),
               exporter="dynamo", opset=None, zero_grn=True, seed=1203, notes="GRN gamma and beta zero, as initialised"))
    add(Family("convnextv2_headless_op17", "headless", "timm", "convnextv2_atto", timm_model("convnextv2_atto", num_classes=0),
               head="pool-norm", seed=1204, notes="num_classes=0, as the .fcmae weights: pooled, normed features"))
    # RMS norm (RmsNorm2d, channels-first) and timm's channels-last RmsNorm (F.rms_norm: only the
    # dynamo exporter takes it; at opset 23 it writes RMSNormalization).
    add(Family("convnext_atto_rms_op17", "rms", "timm", "convnext_atto_rms", timm_model("convnext_atto_rms"),
               norm="rms", seed=1301))
    add(Family("convnext_atto_rms_dynamo", "rms", "timm", "convnext_atto_rms", timm_model("convnext_atto_rms"),
               exporter="dynamo", opset=None, norm="rms", seed=1302))
    add(Family("convnext_rms_channels_last_dynamo", "rms", "timm", "ConvNeXt(norm_layer='rmsnorm')",
               timm_custom(norm_layer="rmsnorm"), exporter="dynamo", opset=None, norm="rms", seed=1303,
               notes="Linear MLP with the channels-last RmsNorm (F.rms_norm), decomposed"))
    add(Family("convnext_rms_channels_last_dynamo23", "rms", "timm", "ConvNeXt(norm_layer='rmsnorm')",
               timm_custom(norm_layer="rmsnorm"), exporter="dynamo", opset=23, norm="rms", seed=1304,
               notes="opset 23: RMSNormalization nodes"))
    # SimpleNorm: x / sqrt(unbiased var + eps) * w, no centring, no bias; ReduceProd in the legacy export.
    add(Family("convnext_zepto_rms_op17", "simple", "timm", "convnext_zepto_rms", timm_model("convnext_zepto_rms"),
               norm="simple", seed=1401))
    add(Family("convnext_zepto_rms_ols_op17", "simple", "timm", "convnext_zepto_rms_ols", timm_model("convnext_zepto_rms_ols"),
               norm="simple", stem="overlap_act", seed=1402))
    add(Family("convnext_zepto_rms_dynamo", "simple", "timm", "convnext_zepto_rms", timm_model("convnext_zepto_rms"),
               exporter="dynamo", opset=None, norm="simple", seed=1403))
    # tanh GELU and SiLU, eps 1e-5, per-stage kernel sizes.
    add(Family("test_convnext_op17", "gelu-tanh", "timm", "test_convnext", timm_model("test_convnext"),
               input_shape=(1, 3, 64, 64), input2_shape=(3, 3, 64, 64), dynamic_batch=True,
               activation="gelu_tanh", eps=1e-5, seed=1501))
    add(Family("test_convnext2_op13", "gelu-tanh", "timm", "test_convnext2", timm_model("test_convnext2"),
               opset=13, activation="gelu_tanh", eps=1e-5, seed=1502))
    add(Family("test_convnext_dynamo", "gelu-tanh", "timm", "test_convnext", timm_model("test_convnext"),
               exporter="dynamo", opset=None, activation="gelu_tanh", eps=1e-5, seed=1503))
    add(Family("test_convnext3_op17", "silu", "timm", "test_convnext3", timm_model("test_convnext3"),
               activation="silu", eps=1e-5, seed=1504, notes="kernel sizes 7, 5, 5, 3"))
    add(Family("test_convnext3_dynamo", "silu", "timm", "test_convnext3", timm_model("test_convnext3"),
               exporter="dynamo", opset=None, activation="silu", eps=1e-5, seed=1505, notes="kernel sizes 7, 5, 5, 3"))
    # Overlapping stems: two 3x3 stride-2 convolutions (with an activation between for overlap_act).
    add(Family("convnext_nano_ols_op17", "overlap-stem", "timm", "convnext_nano_ols", timm_model("convnext_nano_ols"),
               stem="overlap", seed=1601))
    add(Family("convnext_atto_ols_op17", "overlap-stem", "timm", "convnext_atto_ols", timm_model("convnext_atto_ols"),
               stem="overlap_tiered", seed=1602))
    add(Family("convnext_overlap_act_op17", "overlap-stem", "timm", "ConvNeXt(stem_type='overlap_act')",
               timm_custom(stem_type="overlap_act"), stem="overlap_act", seed=1603))
    add(Family("convnext_atto_ols_dynamo", "overlap-stem", "timm", "convnext_atto_ols", timm_model("convnext_atto_ols"),
               exporter="dynamo", opset=None, stem="overlap_tiered", seed=1604))
    # Heads: norm first (hnf), an MLP (hidden Linear + GELU), headless.
    add(Family("convnext_tiny_hnf_op17", "head-norm-first", "timm", "convnext_tiny_hnf", timm_model("convnext_tiny_hnf"),
               head="norm-pool-fc", seed=1701))
    add(Family("convnext_tiny_hnf_dynamo", "head-norm-first", "timm", "convnext_tiny_hnf", timm_model("convnext_tiny_hnf"),
               exporter="dynamo", opset=None, head="norm-pool-fc", seed=1702))
    add(Family("convnext_large_mlp_op17", "mlp-head", "timm", "convnext_large_mlp", timm_model("convnext_large_mlp", head_hidden_size=64),
               input_shape=(2, 3, 64, 64), head="pool-norm-fc-gelu-fc", seed=1703, notes="head_hidden_size 64, fixed batch 2"))
    add(Family("convnext_large_mlp_dynamo", "mlp-head", "timm", "convnext_large_mlp", timm_model("convnext_large_mlp", head_hidden_size=64),
               exporter="dynamo", opset=None, head="pool-norm-fc-gelu-fc", seed=1704, notes="head_hidden_size 64"))
    add(Family("convnext_tiny_headless_op17", "headless", "timm", "convnext_tiny", timm_model("convnext_tiny", num_classes=0),
               head="pool-norm", seed=1705, notes="num_classes=0: pooled, normed features"))
    add(Family("convnext_mlp_headless_op17", "headless", "timm", "convnext_large_mlp",
               timm_model("convnext_large_mlp", num_classes=0, head_hidden_size=64),
               head="pool-norm-fc-gelu", seed=1706, notes="num_classes=0 with head_hidden_size 64: the hidden layer's output"))
    add(Family("convnext_hnf_headless_op17", "headless", "timm", "convnext_tiny_hnf", timm_model("convnext_tiny_hnf", num_classes=0),
               head="norm-pool", seed=1707, notes="num_classes=0: mean of the normed map"))
    add(Family("convnext_hnf_headless_dynamo", "headless", "timm", "convnext_tiny_hnf", timm_model("convnext_tiny_hnf", num_classes=0),
               exporter="dynamo", opset=None, head="norm-pool", seed=1708, notes="num_classes=0: mean of the normed map"))
    # Hugging Face transformers: eps 1e-6 inside, layer_norm_eps (1e-12) for the pooled norm.
    hf = dict(head_eps=1e-12)
    add(Family("hf_convnext_op17", "transformers", "transformers", "ConvNextForImageClassification", hf_model(1),
               seed=1801, notes="layer_norm_eps 1e-12 on the pooled norm", **hf))
    add(Family("hf_convnext_dynamo", "transformers", "transformers", "ConvNextForImageClassification", hf_model(1),
               exporter="dynamo", opset=None, seed=1802, **hf))
    add(Family("hf_convnextv2_op17", "transformers", "transformers", "ConvNextV2ForImageClassification", hf_model(2),
               seed=1803, **hf))
    add(Family("hf_convnextv2_zero_grn_op17", "v2-zero-grn", "transformers", "ConvNextV2ForImageClassification", hf_model(2),
               zero_grn=True, seed=1804, notes="GRN gamma and beta zero, as initialised", **hf))
    add(Family("hf_convnextv2_zero_grn_dynamo", "v2-zero-grn", "transformers", "ConvNextV2ForImageClassification", hf_model(2),
               exporter="dynamo", opset=None, zero_grn=True, seed=1805, **hf))
    return f


# ---------------------------------------------------------------------------
# Export and record
# ---------------------------------------------------------------------------

def zero_grn_parameters(model: nn.Module) -> int:
    n = 0
    for m in model.modules():
        if _kind(m, "") == "grn":
            for p in m.parameters(recurse=False):
                if float(p.abs().max()) != 0.0:
                    raise RuntimeError("a GRN parameter is not zero")
                n += 1
    return n


def strip_metadata(path: str) -> None:
    """Drops the dynamo exporter's per-node metadata (stack traces naming this machine's paths:
    most of the file) and doc strings; the graph, names and initializers stay as exported."""
    m = onnx.load(path)  # with its external data
    for node in m.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    m.graph.doc_string = ""
    del m.metadata_props[:]
    os.remove(path + ".data")  # onnx appends to an existing data file
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data")


def build(fam: Family, out_root: str) -> dict:
    t0 = time.time()
    torch.manual_seed(fam.seed)
    model = fam.build()
    counts = randomize(model, fam.seed, zero_grn=fam.zero_grn)
    model.eval()
    if fam.zero_grn and zero_grn_parameters(model) == 0:
        raise RuntimeError(f"{fam.name}: no GRN to zero")

    out_dir = os.path.join(out_root, fam.name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    path = os.path.join(out_dir, "model.onnx")
    example_shape = list(fam.input_shape)
    if fam.dynamic_batch:
        example_shape[0] = 2  # torch.export specialises size-1 dimensions
    example = torch.from_numpy(make_input(tuple(example_shape), fam.seed * 10 + 9))
    if fam.exporter == "legacy":
        export_legacy(model, example, path, fam)
    else:
        export_dynamo(model, example, path, fam)
        strip_metadata(path)
    onnx.checker.check_model(path)
    info = inspect_model(path)
    sess = ort_session(path)

    shapes = [fam.input_shape] + ([fam.input2_shape] if fam.input2_shape else [])
    cases = []
    for i, shape in enumerate(shapes):
        suffix = "" if i == 0 else str(i + 1)
        x = make_input(shape, fam.seed * 10 + i)
        with torch.inference_mode():
            t_out = model(torch.from_numpy(x)).numpy().astype(np.float32)
        o_out = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
        scale = float(np.max(np.abs(t_out)))
        rel = float(np.max(np.abs(o_out - t_out))) / scale
        if not rel <= REL_TOLERANCE:
            raise RuntimeError(f"{fam.name}: ONNX Runtime is {rel:.2e} off PyTorch")
        if not float(t_out.std(axis=1).min()) > 1e-2 * scale:
            raise RuntimeError(f"{fam.name}: degenerate output")
        np.save(os.path.join(out_dir, f"input{suffix}.npy"), x)
        np.save(os.path.join(out_dir, f"torch_expected{suffix}.npy"), t_out)
        np.save(os.path.join(out_dir, f"ort_expected{suffix}.npy"), o_out)
        cases.append({
            "input": f"input{suffix}.npy", "expected": f"torch_expected{suffix}.npy", "ort_expected": f"ort_expected{suffix}.npy",
            "input_shape": list(x.shape), "output_shape": list(t_out.shape),
            "torch_vs_ort_rel_diff": rel, "max_abs_output": scale,
            "top1": [int(v) for v in t_out.argmax(axis=1)],
        })
    files = sorted(os.listdir(out_dir))
    size = sum(os.path.getsize(os.path.join(out_dir, name)) for name in files)
    entry = {
        "name": fam.name, "family": fam.family, "source": fam.source, "model": fam.model,
        "exporter": fam.exporter, "opset": info["opset_import"].get("ai.onnx"),
        "dynamic_batch": fam.dynamic_batch, "dynamic_hw": fam.dynamic_hw,
        "depths": list(DEPTHS), "dims": list(DIMS),
        "activation": fam.activation, "norm": fam.norm, "eps": fam.eps,
        "head_eps": fam.eps if fam.head_eps is None else fam.head_eps, "head": fam.head, "stem": fam.stem,
        "grn": "none" if not counts.get("grn") else "zero" if fam.zero_grn else "random", "randomised": counts,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "node_count": info["node_count"], "ops": info["ops"],
        "cases": cases, "files": files, "size_bytes": size, "notes": fam.notes,
    }
    print(f"== {fam.name}: {fam.model} {fam.exporter} opset {entry['opset']}, {info['node_count']} nodes, "
          f"{size / 1024:.0f} KiB, ORT {max(c['torch_vs_ort_rel_diff'] for c in cases):.1e} off torch ({time.time() - t0:.1f} s)")
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out_root = os.path.abspath(args.out)
    os.makedirs(out_root, exist_ok=True)
    specs = families()
    if args.only:
        unknown = set(args.only) - {s.name for s in specs}
        if unknown:
            raise SystemExit(f"unknown families: {sorted(unknown)}")
        specs = [s for s in specs if s.name in set(args.only)]
    built = {e["name"]: e for e in (build(s, out_root) for s in specs)}
    manifest = os.path.join(out_root, "manifest.json")
    # With --only, the other families keep their entries; the order is families()'.
    known = {}
    if args.only and os.path.exists(manifest):
        with open(manifest) as fh:
            known = {e["name"]: e for e in json.load(fh)}
    known.update(built)
    entries = [known[f.name] for f in families() if f.name in known]
    with open(manifest, "w") as fh:
        fh.write(json.dumps(entries, indent=1) + "\n")
    import timm
    import transformers
    megabytes = sum(e["size_bytes"] for e in entries) / 2 ** 20
    print(f"{len(entries)} families in {out_root} ({megabytes:.2f} MiB); torch {torch.__version__}, timm {timm.__version__}, "
          f"transformers {transformers.__version__}, onnx {onnx.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
