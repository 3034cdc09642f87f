#!/usr/bin/env python3
"""Generate checkpoint fixtures (safetensors, PyTorch .pth, timm hub folder) for issue #6.

Usage (from the repository root):
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py                    # -> Fixtures/checkpoints/
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --full-size tiny   # ConvNeXt-T (.safetensors, .pth) -> Fixtures/large/ (git-ignored)
    .venv-fixtures/bin/python Fixtures/make_checkpoints.py --full-size xxlarge  # 846 M parameters, 3.4 GB each

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
    randomize_parameters,
)

OUT = os.path.join(HERE, "checkpoints")
LARGE = os.path.join(HERE, "large")
REL_TOLERANCE = 1e-4
MARKER = "/tmp/cnx_pwned_marker"


# ---------------------------------------------------------------------------
# ConvNeXt V2 in the paper's reference layout (module names of facebookresearch/ConvNeXt-V2),
# written from the description in shared/CONVNEXT.md: no layer scale, GRN after the GELU.
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
    entries = [build_family(n, s) for n, s in FAMILIES.items() if not args.only or n in args.only]
    if not args.only:
        build_misc()
        with open(os.path.join(OUT, "manifest.json"), "w") as f:
            json.dump(entries, f, indent=1)
            f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"Fixtures/checkpoints: {total / 1024 / 1024:.2f} MiB; torch {torch.__version__}, onnxruntime {ort.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
