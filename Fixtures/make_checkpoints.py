#!/usr/bin/env python3
"""Generate checkpoint fixtures (safetensors, PyTorch .pth, timm hub folder) for issue #6.

Usage (from the repository root):
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py                    # -> Fixtures/checkpoints/
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --full-size tiny   # ConvNeXt-T (.safetensors, .pth) -> Fixtures/large/ (git-ignored)
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --full-size xxlarge  # 846 M parameters, 3.4 GB each, also 3 shards
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --families-only    # only the issue-11 families and misc/shards
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --variant-table    # Sources/CNXImport/TimmVariantTable.swift

For every model family it builds a small model, overwrites every parameter with random values
far from their initial values (the recipe of make_fixtures.py), and writes, into
checkpoints/<name>/:

    model.safetensors      the state dict (float32)
    model.pth              torch.save(state_dict)
    model.onnx             the legacy (opset 17) ONNX export of the same weights, dynamic batch
    input.npy              float32 NCHW input
    expected.npy           ONNX Runtime's output for it (checked against PyTorch eager)

and, for some families, the wrappers and variants the readers must handle:

    timm_linear/model_wrapped.pth        {"model": {"module." + key: tensor}, "epoch": .., "optimizer": ..}
    timm_linear/model_f16.safetensors    the same weights in float16 (and _bf16 in bfloat16)
    timm_linear/model_f16.pth            the same weights in float16
    timm_linear/hub/                     a timm hub folder: config.json + model.safetensors (timm.models.save_for_hf)
    torchvision/model_wrapped.pth        {"state_dict": state_dict, "epoch": ..}

checkpoints/misc/ holds small files for the reader's edge cases (all tensors with known values):

    dtypes_p2.pth, dtypes_p4.pth         float32/16, bfloat16, int64, int32, a view at an offset, a Parameter;
                                         pickle protocol 2 (torch's default) and 4 (FRAME, MEMOIZE, STACK_GLOBAL)
    dtypes.safetensors                   the same tensors
    deflated.pth                         dtypes_p2.pth rewritten with every entry deflated
    noncontiguous.pth                    a transposed (non-contiguous) view
    legacy.pth                           the pre-1.6 (non-zip) torch.save format
    malicious.pth                        a checkpoint whose pickle calls os.system (posix.system) when
                                         unpickled by Python: the reader must refuse it

checkpoints/manifest.json describes the model fixtures.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import math
import os
import shutil
import sys
import time
import warnings
import zipfile

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import (  # noqa: E402
    IsotropicConvNeXt, RefConvNeXt, RefLayerNorm, build_torchvision, make_input, ort_session,
    randomize_parameters, require_all_randomised,
)

OUT = os.path.join(HERE, "checkpoints")
LARGE = os.path.join(HERE, "large")
REL_TOLERANCE = 1e-4
MARKER = "/tmp/cnx_pwned_marker"


# ---------------------------------------------------------------------------
# ConvNeXt V2 in the paper's reference layout (module names of facebookresearch/ConvNeXt-V2),
# written from the ConvNeXt V2 paper's description: no layer scale, GRN after the GELU.
# ---------------------------------------------------------------------------

class GRN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class RefBlockV2(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = RefLayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


def build_reference_v2(depths, dims, num_classes):
    model = RefConvNeXt(num_classes=num_classes, depths=depths, dims=dims)
    model.stages = nn.ModuleList(nn.Sequential(*[RefBlockV2(dims[i]) for _ in range(depths[i])]) for i in range(4))
    return model


def build_timm(depths, dims, num_classes, **kwargs):
    import timm
    # Through create_model, so that the model carries a pretrained_cfg (for the hub folder).
    return timm.create_model("convnext_atto", pretrained=False, depths=depths, dims=dims, num_classes=num_classes,
                             conv_mlp=kwargs.pop("conv_mlp", False), drop_path_rate=0.0, **kwargs)


DIMS = (4, 8, 12, 16)

# name -> (source, family, builder, depths, dims, classes, input shape, seed, stem)
FAMILIES = {
    "timm_linear": ("timm", "convnext", lambda: build_timm((1, 1, 2, 1), DIMS, 10), (1, 1, 2, 1), DIMS, 10,
                    (2, 3, 32, 32), 601, "patchify 4x4 stride 4"),
    "timm_convmlp": ("timm", "convnext-convmlp", lambda: build_timm((1, 1, 1, 1), DIMS, 7, conv_mlp=True),
                     (1, 1, 1, 1), DIMS, 7, (1, 3, 32, 32), 602, "patchify 4x4 stride 4"),
    "timm_ols": ("timm", "convnext-ols", lambda: build_timm((1, 1, 1, 1), DIMS, 10, conv_mlp=True, stem_type="overlap"),
                 (1, 1, 1, 1), DIMS, 10, (1, 3, 32, 32), 603, "overlapping: two 3x3 stride 2"),
    "torchvision": ("torchvision", "convnext", lambda: build_torchvision((1, 2, 1, 1), DIMS, 10), (1, 2, 1, 1), DIMS, 10,
                    (1, 3, 32, 32), 604, "patchify 4x4 stride 4"),
    "v2": ("timm", "convnext-v2", lambda: build_timm((1, 1, 2, 1), DIMS, 10, use_grn=True, ls_init_value=None),
           (1, 1, 2, 1), DIMS, 10, (1, 3, 64, 64), 605, "patchify 4x4 stride 4"),
    "reference": ("reference", "convnext", lambda: RefConvNeXt(num_classes=10, depths=(2, 1, 1, 1), dims=DIMS),
                  (2, 1, 1, 1), DIMS, 10, (1, 3, 32, 32), 606, "patchify 4x4 stride 4"),
    "reference_v2": ("reference", "convnext-v2", lambda: build_reference_v2((1, 1, 1, 1), DIMS, 10),
                     (1, 1, 1, 1), DIMS, 10, (1, 3, 32, 32), 607, "patchify 4x4 stride 4"),
    "isotropic": ("isotropic", "convnext-isotropic", lambda: IsotropicConvNeXt(num_classes=10, depth=3, dim=8),
                  (3,), (8,), 10, (1, 3, 32, 32), 608, "patchify 16x16 stride 16"),
}


def export_onnx(model, example, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch_size"}, "logits": {0: "batch_size"}},
                          do_constant_folding=True)


def state_dict_of(model):
    return collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())


def build_family(name, spec) -> dict:
    source, family, build, depths, dims, classes, shape, seed, stem = spec
    torch.manual_seed(seed)
    model = build()
    randomize_parameters(model, seed)
    model.eval()
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    sd = state_dict_of(model)
    save_file(sd, os.path.join(out, "model.safetensors"))
    torch.save(sd, os.path.join(out, "model.pth"))

    x = make_input(shape, seed)
    example = torch.from_numpy(make_input((2,) + shape[1:], seed + 1))
    export_onnx(model, example, os.path.join(out, "model.onnx"))
    sess = ort_session(os.path.join(out, "model.onnx"))
    expected = sess.run(None, {"input": x})[0].astype(np.float32)
    with torch.inference_mode():
        eager = model(torch.from_numpy(x)).numpy()
    rel = float(np.abs(expected - eager).max() / np.abs(eager).max())
    if not rel <= REL_TOLERANCE:
        raise RuntimeError(f"{name}: ORT vs torch relative difference {rel:.2e}")
    if not float(expected.std(axis=1).min()) > 1e-2 * float(np.abs(expected).max()):
        raise RuntimeError(f"{name}: degenerate logits")
    np.save(os.path.join(out, "input.npy"), x)
    np.save(os.path.join(out, "expected.npy"), expected)

    extras = []
    if name == "timm_linear":
        wrapped = {"model": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
                   "epoch": 7, "best_top1": 0.5, "note": "a training checkpoint",
                   "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1, 2]}]},
                   "amp": None, "flags": [True, False]}
        torch.save(wrapped, os.path.join(out, "model_wrapped.pth"))
        half = collections.OrderedDict((k, v.half()) for k, v in sd.items())
        save_file(half, os.path.join(out, "model_f16.safetensors"))
        torch.save(half, os.path.join(out, "model_f16.pth"))
        save_file(collections.OrderedDict((k, v.bfloat16()) for k, v in sd.items()), os.path.join(out, "model_bf16.safetensors"))
        from timm.models import save_for_hf
        labels = [f"class_{i}" for i in range(classes)]
        save_for_hf(model, os.path.join(out, "hub"), safe_serialization=True,
                    model_config={"label_names": labels},
                    data_config={"input_size": (3, 256, 256), "crop_pct": 0.9, "interpolation": "bilinear"})
        extras = ["model_wrapped.pth", "model_f16.safetensors", "model_f16.pth", "model_bf16.safetensors", "hub/"]
    if name == "torchvision":
        torch.save({"state_dict": sd, "epoch": 3}, os.path.join(out, "model_wrapped.pth"))
        extras = ["model_wrapped.pth"]

    for d, _, fs in os.walk(out):
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)   # safetensors writes 0600
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"== {name}: {source} {family}, depths {depths} dims {dims}, {classes} classes, "
          f"{sum(p.numel() for p in model.parameters())} parameters, torch vs ORT {rel:.1e}, {size / 1024:.0f} KiB")
    return {"name": name, "source": source, "family": family, "depths": list(depths), "dims": list(dims),
            "num_classes": classes, "stem": stem, "input_shape": list(shape), "keys": len(sd), "extras": extras,
            "layer_scale": any(k.endswith(("gamma", "layer_scale")) and v.dim() != 4 for k, v in sd.items()),
            "grn": family == "convnext-v2"}


class Evil:
    """Unpickling this in Python would run a shell command. The reader must refuse it."""

    def __reduce__(self):
        return (os.system, (f"echo pwned > {MARKER}",))


def build_misc():
    out = os.path.join(OUT, "misc")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4  # exact in float16 and bfloat16
    base = torch.arange(10, dtype=torch.float32) - 5
    tensors = collections.OrderedDict([
        ("f32", a.clone()),
        ("f16", a.half()),
        ("bf16", a.bfloat16()),
        ("i64", torch.arange(5, dtype=torch.int64) - 2),
        ("i32", torch.arange(4, dtype=torch.int32) * 3),
        ("scalar", torch.tensor(2.5)),
    ])
    save_file(tensors, os.path.join(out, "dtypes.safetensors"))
    with_views = collections.OrderedDict(tensors)
    with_views["view"] = base[4:]                       # offset 4 into a 10-element storage
    with_views["param"] = nn.Parameter(a.clone() * 2)   # _rebuild_parameter
    torch.save(with_views, os.path.join(out, "dtypes_p2.pth"))
    torch.save(with_views, os.path.join(out, "dtypes_p4.pth"), pickle_protocol=4)
    # The same archive with every entry deflated (torch itself stores them).
    with zipfile.ZipFile(os.path.join(out, "dtypes_p2.pth")) as src, \
            zipfile.ZipFile(os.path.join(out, "deflated.pth"), "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t()}, os.path.join(out, "noncontiguous.pth"))
    torch.save({"w": a}, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"model": {"w": a}, "payload": Evil()}, os.path.join(out, "malicious.pth"))
    for f in os.listdir(out):
        os.chmod(os.path.join(out, f), 0o644)
    print(f"== misc: {sorted(os.listdir(out))}")


def full_size(which: str):
    """A full-size timm checkpoint with random weights into Fixtures/large/ (git-ignored)."""
    import timm
    name = {"tiny": "convnext_tiny", "xxlarge": "convnext_xxlarge"}[which]
    out = os.path.join(LARGE, f"{name}_checkpoint")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=1000)
    shapes = collections.OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())
    del model
    gen = torch.Generator().manual_seed(7)
    sd = collections.OrderedDict()
    for k, s in shapes.items():
        fan_in = math.prod(s[1:]) if len(s) > 1 else 1
        t = torch.randn(s, generator=gen) * (1.0 / math.sqrt(fan_in) if len(s) > 1 else 0.3)
        if k.endswith("gamma"):
            t = torch.rand(s, generator=gen) * 0.9 + 0.1
        elif k.endswith("norm.weight") or ".downsample.0.weight" in k or k == "stem.1.weight":
            t = torch.rand(s, generator=gen) + 0.5
        sd[k] = t
    path = os.path.join(out, "model.safetensors")
    save_file(sd, path)
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {path}: {n / 1e6:.1f} M parameters, {os.path.getsize(path) / 1e9:.2f} GB in {time.time() - t0:.0f} s")
    torch.save(sd, os.path.join(out, "model.pth"))
    print(f"wrote {os.path.join(out, 'model.pth')}")
    if which == "xxlarge":
        # The same weights as the hubs ship anything this size: three shards and their index.
        sharded = os.path.join(out, "sharded")
        shutil.rmtree(sharded, ignore_errors=True)
        os.makedirs(sharded)
        index = _write_shards(sd, sharded, "safetensors", 3)
        print(f"wrote {os.path.join(sharded, index)} and its 3 shards")
    # PyTorch's own logits on a fixed input, for the comparison (timm builds the model; the
    # weights are assigned, not copied).
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=1000)
    model.load_state_dict(sd, assign=True)
    model.eval()
    x = make_input((1, 3, 128, 128), 7)
    with torch.inference_mode():
        y = model(torch.from_numpy(x)).numpy()
    np.save(os.path.join(out, "input.npy"), x)
    np.save(os.path.join(out, "expected.npy"), y.astype(np.float32))
    print(f"wrote input.npy (1x3x128x128) and PyTorch's logits, expected.npy (max |logit| {np.abs(y).max():.3f})")


# ---------------------------------------------------------------------------
# Issue #11: every family timm registers and Hugging Face transformers' ConvNeXt, each as a small
# instance with every parameter random (every norm's weight and bias, layer scale, GRN), PyTorch's
# own outputs saved beside it, in the forms people download: bare safetensors and .pth, timm hub
# folders (config.json + model.safetensors or pytorch_model.bin), transformers save_pretrained
# folders (also sharded), and the legacy ONNX export where the exporter takes the model.
# Described in checkpoints/families.json.
# ---------------------------------------------------------------------------

SMALL = DIMS


def randomize_all(model: nn.Module, seed: int) -> None:
    """Every parameter random and far from its initial value, whatever module holds it."""
    gen = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            kind = type(module).__name__
            for p_name, p in module.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    std = 1.0 / math.sqrt(p[0].numel()) if p_name == "weight" else 0.1
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                elif "Norm" in kind and "Response" not in kind and "GRN" not in kind:
                    if p_name == "weight":
                        # magnitudes in [0.5, 1.5], about one in five negative
                        sign = torch.where(torch.rand(p.shape, generator=gen) < 0.2, -1.0, 1.0)
                        p.copy_((torch.rand(p.shape, generator=gen) + 0.5) * sign)
                    else:
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
                elif "GRN" in kind or "ResponseNorm" in kind:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
                elif p_name in ("gamma", "layer_scale", "layer_scale_parameter"):
                    p.copy_(torch.rand(p.shape, generator=gen) * 0.9 + 0.1)
                else:
                    raise RuntimeError(f"don't know how to randomise {full} of {kind}")
                done.add(full)
    require_all_randomised(model, done)


def timm_model(arch, **kwargs):
    import timm
    return timm.create_model(arch, pretrained=False, drop_path_rate=0.0, **kwargs)


def hf_model(cls_name, **config):
    import transformers
    v2 = "V2" in cls_name
    cfg = (transformers.ConvNextV2Config if v2 else transformers.ConvNextConfig)(**config)
    return getattr(transformers, cls_name)(cfg)


# name -> dict(build, source, input shape, seed, bare flags, notes)
FAMILIES_11 = {
    # timm: registered hyperparameters through config.json (architecture + model_args); a bare
    # file of these custom sizes matches no registered variant, so it takes the flags.
    "timm_tanh": dict(source="timm", build=lambda: timm_model("test_convnext", depths=(1, 1, 2, 1), dims=SMALL, num_classes=10),
                      shape=(1, 3, 64, 64), seed=1101, flags={"activation": "gelu_tanh", "layer_norm_eps": "1e-5"},
                      note="test_convnext's layout: tanh GELU, LayerNorm eps 1e-5", hub_bin=True),
    "timm_silu_kernels": dict(source="timm", build=lambda: timm_model("test_convnext3", depths=(1, 1, 1, 1), dims=SMALL, num_classes=10),
                              shape=(1, 3, 64, 64), seed=1102, flags={"activation": "silu", "layer_norm_eps": "1e-5"},
                              note="test_convnext3's layout: SiLU, kernels 7, 5, 5, 3, eps 1e-5"),
    "timm_rms": dict(source="timm", build=lambda: timm_model("convnext_atto_rms", depths=(1, 1, 2, 1), dims=SMALL, num_classes=10),
                     shape=(1, 3, 64, 64), seed=1103, flags={"norm": "rmsnorm"},
                     note="convnext_atto_rms's layout: conv_mlp, RmsNorm2d (no bias)"),
    "timm_simplenorm": dict(source="timm", build=lambda: timm_model("convnext_zepto_rms_ols", depths=(1, 1, 1, 1), dims=SMALL, num_classes=10),
                            shape=(1, 3, 64, 64), seed=1104, flags={"norm": "simplenorm"},
                            note="convnext_zepto_rms_ols's layout: SimpleNorm2d, overlap_act stem (GELU between the stem convolutions)"),
    "timm_hnf": dict(source="timm", build=lambda: timm_model("convnext_tiny_hnf", depths=(1, 1, 2, 1), dims=SMALL, num_classes=10),
                     shape=(1, 3, 64, 64), seed=1105, flags={},
                     note="convnext_tiny_hnf's layout: head_norm_first (norm_pre, then pool and fc), conv_mlp"),
    "timm_mlp_head": dict(source="timm", build=lambda: timm_model("convnext_large_mlp", depths=(1, 1, 1, 1), dims=SMALL, num_classes=10, head_hidden_size=12),
                          shape=(1, 3, 64, 64), seed=1106, flags={},
                          note="convnext_large_mlp's layout: head_hidden_size (head.pre_logits.fc and GELU before the classifier)"),
    "timm_ols_tiered": dict(source="timm", build=lambda: timm_model("convnext_atto_ols", depths=(1, 1, 1, 1), dims=(12, 8, 12, 16), num_classes=10),
                            shape=(1, 3, 64, 64), seed=1107, flags={},
                            note="convnext_atto_ols's layout: overlap_tiered stem (the first convolution half as wide)"),
    "v2_convmlp": dict(source="timm", build=lambda: timm_model("convnextv2_atto", depths=(1, 1, 2, 1), dims=SMALL, num_classes=10),
                       shape=(1, 3, 64, 64), seed=1108, flags={},
                       note="convnextv2_atto's layout: conv_mlp, GRN over the channels-first hidden map"),
    "v2_headless": dict(source="timm", build=lambda: timm_model("convnextv2_tiny", depths=(1, 1, 1, 1), dims=SMALL, num_classes=0),
                        shape=(1, 3, 64, 64), seed=1109, flags={},
                        note="convnextv2_tiny's layout with num_classes=0 (as timm ships the .fcmae weights): the output is the pooled, normed features"),
    "timm_registered": dict(source="timm", build=lambda: timm_model("test_convnext", num_classes=10),
                            shape=(1, 3, 64, 64), seed=1110, flags={}, bare_only=True,
                            note="timm's registered test_convnext itself (depths 1, 2, 4, 2, widths 24...64): the smallest registered ConvNeXt, so a bare file is matched to the table (eps 1e-5, tanh GELU)"),
    # transformers: save_pretrained folders; the bare weights file takes the flags where the
    # config differs from transformers' defaults.
    "hf_convnext": dict(source="transformers", build=lambda: hf_model("ConvNextForImageClassification", hidden_sizes=list(SMALL), depths=[1, 1, 2, 1], num_labels=5,
                                                                      id2label={i: n for i, n in enumerate(["cat", "dog", "fox", "owl", "yak"])}),
                        shape=(1, 3, 64, 64), seed=1111, flags={}, sharded=True,
                        note="ConvNextForImageClassification, transformers' defaults (gelu, layer_norm_eps 1e-12)"),
    "hf_convnextv2": dict(source="transformers", build=lambda: hf_model("ConvNextV2ForImageClassification", hidden_sizes=list(SMALL), depths=[1, 1, 1, 1], num_labels=4,
                                                                        hidden_act="gelu_new", layer_norm_eps=1e-2),
                          shape=(1, 3, 64, 64), seed=1112, flags={"activation": "gelu_tanh", "layer_norm_eps": "head=1e-2"},
                          note="ConvNextV2ForImageClassification with hidden_act gelu_new (tanh) and layer_norm_eps 1e-2 for the pooled norm"),
    "hf_convnext_model": dict(source="transformers", build=lambda: hf_model("ConvNextModel", hidden_sizes=list(SMALL), depths=[1, 1, 1, 1]),
                              shape=(1, 3, 64, 64), seed=1113, flags={},
                              note="the bare ConvNextModel: the output is the pooled, normed features (pooler_output)"),
    "hf_convnextv2_backbone": dict(source="transformers", build=lambda: hf_model("ConvNextV2Backbone", hidden_sizes=list(SMALL), depths=[1, 1, 1, 1],
                                                                               out_features=["stem", "stage2", "stage4"]),
                                   shape=(1, 3, 64, 64), seed=1114, flags={},
                                   note="ConvNextV2Backbone with out_features stem, stage2, stage4: each stage map through its hidden_states_norms LayerNorm"),
    "hf_convnext_backbone": dict(source="transformers", build=lambda: hf_model("ConvNextBackbone", hidden_sizes=list(SMALL), depths=[1, 2, 1, 1],
                                                                             out_features=["stem", "stage1", "stage3", "stage4"]),
                                 shape=(1, 3, 64, 64), seed=1115, flags={},
                                 note="ConvNextBackbone (V1) with out_features stem, stage1, stage3, stage4: each stage map through its hidden_states_norms LayerNorm, two of them also read by the next downsample"),
}


class _Outputs(nn.Module):
    """A transformers model as a plain module returning tensors (for torch.onnx.export)."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x):
        o = self.model(x)
        if hasattr(o, "feature_maps"):
            return tuple(o.feature_maps)
        if hasattr(o, "logits"):
            return o.logits
        return o.pooler_output


def _output_names(name, model):
    if name.startswith("hf_"):
        if hasattr(model, "out_features"):
            return ["stem" if f == "stem" else f"stage{int(f[5:]) - 1}" for f in model.out_features]
        return ["logits"] if hasattr(model, "classifier") else ["features"]
    return ["logits"] if model.num_classes > 0 else ["features"]


def _write_shards(sd, folder, kind, count):
    """`count` shards and their index, as the hubs write them (transformers' naming)."""
    keys = list(sd)
    per = math.ceil(len(keys) / count)
    weight_map = {}
    ext = "safetensors" if kind == "safetensors" else "bin"
    prefix = "model" if kind == "safetensors" else "pytorch_model"
    for i in range(count):
        part = collections.OrderedDict((k, sd[k]) for k in keys[i * per:(i + 1) * per])
        file = f"{prefix}-{i + 1:05d}-of-{count:05d}.{ext}"
        if kind == "safetensors":
            save_file(part, os.path.join(folder, file), metadata={"format": "pt"})
        else:
            torch.save(part, os.path.join(folder, file))
        weight_map.update({k: file for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    index = f"{prefix}.{ext}.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    with open(os.path.join(folder, index), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    return index


def build_family_11(name, spec) -> dict:
    torch.manual_seed(spec["seed"])
    model = spec["build"]()
    randomize_all(model, spec["seed"])
    model.eval()
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    sd = state_dict_of(model)
    outputs = _output_names(name, model)
    hf = spec["source"] == "transformers"
    plain = _Outputs(model, outputs) if hf else model

    x = make_input(spec["shape"], spec["seed"])
    with torch.inference_mode():
        y = plain(torch.from_numpy(x))
    ys = list(y) if isinstance(y, tuple) else [y]
    np.save(os.path.join(out, "input.npy"), x)
    for o, t in zip(outputs, ys):
        np.save(os.path.join(out, f"expected_{o}.npy" if len(outputs) > 1 else "expected.npy"), t.numpy().astype(np.float32))
    if "logits" in outputs and not float(ys[0].numpy().std(axis=1).min()) > 1e-2 * float(ys[0].abs().max()):
        raise RuntimeError(f"{name}: degenerate logits")

    forms = [{"path": "model.safetensors", "flags": spec["flags"]}]
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    if not spec.get("bare_only"):
        torch.save(sd, os.path.join(out, "model.pth"))
        forms.append({"path": "model.pth", "flags": spec["flags"]})
    if hf:
        model.save_pretrained(os.path.join(out, "hf"))
        forms.append({"path": "hf", "flags": {}})
        # transformers 5 writes safetensors only; pytorch_model.bin is what older versions wrote.
        os.makedirs(os.path.join(out, "hf_bin"))
        shutil.copy(os.path.join(out, "hf", "config.json"), os.path.join(out, "hf_bin", "config.json"))
        torch.save(sd, os.path.join(out, "hf_bin", "pytorch_model.bin"))
        forms.append({"path": "hf_bin", "flags": {}})
        if spec.get("sharded"):
            for kind, folder in (("safetensors", "hf_sharded"), ("bin", "hf_sharded_bin")):
                os.makedirs(os.path.join(out, folder))
                shutil.copy(os.path.join(out, "hf", "config.json"), os.path.join(out, folder, "config.json"))
                _write_shards(sd, os.path.join(out, folder), kind, 3)
                forms.append({"path": folder, "flags": {}})
    elif not spec.get("bare_only"):
        from timm.models import save_for_hf
        labels = [f"class_{i}" for i in range(model.num_classes)] if model.num_classes else None
        save_for_hf(model, os.path.join(out, "hub"), safe_serialization=True,
                    model_config={"label_names": labels} if labels else None)
        forms.append({"path": "hub", "flags": {}})
        if spec.get("hub_bin"):
            save_for_hf(model, os.path.join(out, "hub_bin"), safe_serialization=False,
                        model_config={"label_names": labels} if labels else None)
            forms.append({"path": "hub_bin", "flags": {}})

    onnx_ok = False
    if not spec.get("bare_only"):
        try:
            example = torch.from_numpy(make_input((1,) + spec["shape"][1:], spec["seed"] + 1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(plain, (example,), os.path.join(out, "model.onnx"), dynamo=False, opset_version=17,
                                  input_names=["input"], output_names=outputs,
                                  dynamic_axes={"input": {0: "batch_size"}, **{o: {0: "batch_size"} for o in outputs}},
                                  do_constant_folding=True)
            onnx_ok = True
        except Exception as e:  # the legacy exporter refuses some models; the checkpoint is the point here
            print(f"   {name}: no ONNX export ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
        if onnx_ok:
            got = ort_session(os.path.join(out, "model.onnx")).run(None, {"input": x})
            worst = max(float(np.abs(g - t.numpy()).max() / np.abs(t.numpy()).max()) for g, t in zip(got, ys))
            if not worst <= REL_TOLERANCE:
                raise RuntimeError(f"{name}: ORT vs torch relative difference {worst:.2e}")

    for d, _, fs in os.walk(out):
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    params = sum(p.numel() for p in model.parameters())
    print(f"== {name}: {spec['source']}, {params} parameters, outputs {outputs}, forms {[f['path'] for f in forms]}"
          f"{', ONNX' if onnx_ok else ''}, {size / 1024:.0f} KiB")
    return {"name": name, "source": spec["source"], "note": spec["note"], "outputs": outputs,
            "input_shape": list(spec["shape"]), "forms": forms, "onnx": onnx_ok, "bare_flags": spec["flags"],
            "parameters": params, "torch": torch.__version__}


def build_shard_misc():
    """Sharded checkpoints that lie: each folder's index or shards are wrong in one way."""
    root = os.path.join(OUT, "misc", "shards")
    shutil.rmtree(root, ignore_errors=True)
    a, b, c = torch.arange(4.0), torch.arange(6.0).reshape(2, 3), torch.ones(2)

    def case(folder, shards, weight_map):
        d = os.path.join(root, folder)
        os.makedirs(d)
        for file, tensors in shards.items():
            save_file(collections.OrderedDict(tensors), os.path.join(d, file), metadata={"format": "pt"})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 48}, "weight_map": weight_map}, f, indent=2)
        for fn in os.listdir(d):
            os.chmod(os.path.join(d, fn), 0o644)

    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    case("missing_shard", {s1: [("a", a)]}, {"a": s1, "b": s2})
    case("overlap", {s1: [("a", a), ("b", b)], s2: [("b", b), ("c", c)]}, {"a": s1, "b": s1, "c": s2})
    case("wrong_map", {s1: [("a", a)], s2: [("b", b), ("c", c)]}, {"a": s1, "b": s1, "c": s2})
    case("unlisted", {s1: [("a", a), ("c", c)], s2: [("b", b)]}, {"a": s1, "b": s2})
    case("not_listed_in_shard", {s1: [("a", a)], s2: [("b", b)]}, {"a": s1, "b": s2, "c": s2})
    case("outside", {s1: [("a", a)]}, {"a": "../" + s1})
    print(f"== misc/shards: {sorted(os.listdir(root))}")


# ---------------------------------------------------------------------------
# The table of timm's registered ConvNeXt variants (Sources/CNXImport/TimmVariantTable.swift):
# what each one's weights do not say (norm kind, epsilon, activation, GRN epsilon), beside what
# they do (depths, widths, kernels, stem, head), read off each model built on the meta device.
# ---------------------------------------------------------------------------

def _timm_variant_row(name):
    import timm
    from timm.layers import LayerNorm, LayerNorm2d, RmsNorm, RmsNorm2d, SimpleNorm, SimpleNorm2d
    kinds = {LayerNorm: "layerNorm", LayerNorm2d: "layerNorm", RmsNorm: "rmsNorm", RmsNorm2d: "rmsNorm",
             SimpleNorm: "simpleNorm", SimpleNorm2d: "simpleNorm"}
    acts = {"GELU": "gelu", "GELUTanh": "geluTanh", "SiLU": "silu"}

    def act(m):
        t = type(m).__name__
        if t == "GELU" and getattr(m, "approximate", "none") == "tanh":
            return "geluTanh"
        return acts[t]

    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False)
    block = m.stages[0].blocks[0]
    stem_convs = [x for x in m.stem if isinstance(x, nn.Conv2d)]
    if len(stem_convs) == 1:
        stem = "patch"
    elif any(not isinstance(x, nn.Conv2d) and x is not m.stem[-1] for x in m.stem):
        stem = "overlapAct"
    elif stem_convs[0].out_channels != m.stages[0].blocks[0].conv_dw.out_channels:
        stem = "overlapTiered"
    else:
        stem = "overlap"
    norms = [m.stem[-1], m.stages[1].downsample[0], block.norm]
    if isinstance(m.norm_pre, nn.Identity):
        norms.append(m.head.norm)
        head = f".mlp(hidden: {m.head.hidden_size})" if m.head.hidden_size else ".poolNormFC"
        head_act = act(m.head.pre_logits.act) if m.head.hidden_size else "gelu"
    else:
        norms.append(m.norm_pre)
        head, head_act = ".normFirst", "gelu"
    kind = {kinds[type(n)] for n in norms}
    eps = {n.eps for n in norms}
    assert len(kind) == 1 and len(eps) == 1, f"{name}: norms differ ({kind}, {eps}); the table has one per variant"
    grn_eps = block.mlp.grn.eps if hasattr(block.mlp, "grn") else 1e-6
    return (f'        TimmVariant(name: "{name}", depths: {[len(s.blocks) for s in m.stages]}, '
            f'dims: {[s.blocks[0].conv_dw.out_channels for s in m.stages]}, '
            f'kernels: {[s.blocks[0].conv_dw.kernel_size[0] for s in m.stages]},\n'
            f'                    convMLP: {str(block.use_conv_mlp).lower()}, grn: {str(hasattr(block.mlp, "grn")).lower()}, '
            f'layerScale: {str(block.gamma is not None).lower()}, stem: .{stem}, head: {head},\n'
            f'                    norm: .{kind.pop()}, eps: {eps.pop():g}, activation: .{act(block.mlp.act)}, '
            f'headActivation: .{head_act}, grnEps: {grn_eps:g}),')


def variant_table(path):
    import timm
    names = sorted(set(timm.list_models("convnext*") + timm.list_models("convnextv2*") + timm.list_models("test_convnext*")))
    rows = "\n".join(_timm_variant_row(n) for n in names)
    text = f"""// Generated by Fixtures/make_checkpoints.py --variant-table from timm {timm.__version__}: every model of
// timm.list_models('convnext*'), ('convnextv2*') and ('test_convnext*'), built on the meta device and
// read off its modules. Do not edit by hand; run the script again when timm adds a variant.

extension TimmVariant {{
    /// timm's registered ConvNeXt variants ({len(names)}), by name.
    static let all: [TimmVariant] = [
{rows}
    ]
}}
"""
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}: {len(names)} variants")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-size", choices=["tiny", "xxlarge"], help="write a full-size checkpoint into Fixtures/large/")
    ap.add_argument("--only", nargs="*", help="only these families")
    ap.add_argument("--families-only", action="store_true",
                    help="only the families of checkpoints/families.json and misc/shards (the others stay as they are)")
    ap.add_argument("--variant-table", action="store_true",
                    help="write Sources/CNXImport/TimmVariantTable.swift from the installed timm")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.variant_table:
        variant_table(os.path.join(os.path.dirname(HERE), "Sources", "CNXImport", "TimmVariantTable.swift"))
        return 0
    if args.full_size:
        full_size(args.full_size)
        return 0
    os.makedirs(OUT, exist_ok=True)
    if args.families_only:
        families = [build_family_11(n, s) for n, s in FAMILIES_11.items()]
        build_shard_misc()
        with open(os.path.join(OUT, "families.json"), "w") as f:
            json.dump(families, f, indent=1)
            f.write("\n")
        return 0
    entries = [build_family(n, s) for n, s in FAMILIES.items() if not args.only or n in args.only]
    families = [build_family_11(n, s) for n, s in FAMILIES_11.items() if not args.only or n in args.only]
    if args.only and families:
        # The other families' entries stay as they are; the rebuilt ones replace theirs.
        path = os.path.join(OUT, "families.json")
        with open(path) as f:
            kept = {e["name"]: e for e in json.load(f)}
        kept.update({e["name"]: e for e in families})
        with open(path, "w") as f:
            json.dump([kept[n] for n in FAMILIES_11 if n in kept], f, indent=1)
            f.write("\n")
    if not args.only:
        build_misc()
        build_shard_misc()
        with open(os.path.join(OUT, "manifest.json"), "w") as f:
            json.dump(entries, f, indent=1)
            f.write("\n")
        with open(os.path.join(OUT, "families.json"), "w") as f:
            json.dump(families, f, indent=1)
            f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"Fixtures/checkpoints: {total / 1024 / 1024:.2f} MiB; torch {torch.__version__}, onnxruntime {ort.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
