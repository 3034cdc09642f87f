#!/usr/bin/env python3
"""Generate ONNX test fixtures for the ConvNeXt converter/runtime.

Usage (from the repository root):
    bash Fixtures/setup_venv.sh
    .venv-fixtures/bin/python Fixtures/make_fixtures.py                 # small models -> Fixtures/models/
    .venv-fixtures/bin/python Fixtures/make_fixtures.py --full-size     # convnext_tiny -> Fixtures/large/ (git-ignored)

Every model gets all of its parameters overwritten with random values far from their
initial values (layer scale, LayerNorm affine, GRN, ...), so that a wrong block
implementation cannot hide behind near-identity blocks. Everything is seeded.

Each model directory holds:
    model.onnx (+ model.onnx.data for the dynamo exporter's external data)
    input.npy / expected.npy           float32, expected = ONNX Runtime CPU output
    torch_expected.npy                 float32, PyTorch eager output (reference only)
    input2.npy / expected2.npy / torch_expected2.npy   for models with a dynamic batch or H/W
and models/manifest.json describes them all.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SMALL_OUT = os.path.join(HERE, "models")
DEFAULT_LARGE_OUT = os.path.join(HERE, "large")

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch_size"
HEIGHT_DIM = "height"
WIDTH_DIM = "width"
REL_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------
# Reference-layout ConvNeXt (module names follow the paper's reference code).
# Written here from the architecture the ConvNeXt paper describes.
# ---------------------------------------------------------------------------

class RefLayerNorm(nn.Module):
    """LayerNorm over channels; 'channels_first' is written out by hand."""

    def __init__(self, channels: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(data_format)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.data_format = data_format
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, (self.channels,), self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class RefBlock(nn.Module):
    def __init__(self, dim: int, layer_scale_init: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = RefLayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
        return shortcut + x


class RefConvNeXt(nn.Module):
    def __init__(self, in_chans=3, num_classes=10, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)):
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
            RefLayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
        ))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                RefLayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
            ))
        self.stages = nn.ModuleList(
            nn.Sequential(*[RefBlock(dims[i]) for _ in range(depths[i])]) for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        x = x.mean([-2, -1])
        return self.head(self.norm(x))


class IsotropicConvNeXt(nn.Module):
    """Isotropic ConvNeXt: 16x16/16 patchify conv, constant width, no downsampling."""

    def __init__(self, in_chans=3, num_classes=10, depth=3, dim=32):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, dim, kernel_size=16, stride=16)
        self.blocks = nn.Sequential(*[RefBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = x.mean([-2, -1])
        return self.head(self.norm(x))


# ---------------------------------------------------------------------------
# Parameter randomisation
# ---------------------------------------------------------------------------

def _is_grn(module: nn.Module) -> bool:
    return type(module).__name__ in ("GlobalResponseNorm", "GRN")


@torch.no_grad()
def randomize_parameters(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter with random values away from its initial value."""
    gen = torch.Generator().manual_seed(seed)

    def normal(p, std):
        p.copy_(torch.randn(p.shape, generator=gen) * std)

    def uniform(p, lo, hi):
        p.copy_(torch.rand(p.shape, generator=gen) * (hi - lo) + lo)

    done = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if p_name == "weight":
                    fan_in = p[0].numel()  # in_ch/groups * kh * kw, or in_features
                    normal(p, 1.0 / math.sqrt(fan_in))
                elif p_name == "bias":
                    normal(p, 0.1)
                else:
                    raise RuntimeError(f"unexpected parameter {full}")
            elif isinstance(module, (nn.LayerNorm, RefLayerNorm)):
                if p_name == "weight":
                    # magnitudes in [0.5, 1.5], about one in five negative
                    uniform(p, 0.5, 1.5)
                    sign = torch.where(torch.rand(p.shape, generator=gen) < 0.2, -1.0, 1.0)
                    p.mul_(sign)
                elif p_name == "bias":
                    normal(p, 0.3)
                else:
                    raise RuntimeError(f"unexpected parameter {full}")
            elif _is_grn(module):
                normal(p, 0.5)
            elif p_name in ("gamma", "layer_scale"):
                uniform(p, 0.1, 1.0)
            else:
                raise RuntimeError(f"don't know how to randomise parameter {full} of {type(module).__name__}")
            done.add(full)
    require_all_randomised(model, done)


def require_all_randomised(model: nn.Module, done: set) -> None:
    """Refuse a model whose parameters are not all in `done`, the names a randomiser overwrote."""
    missing = [n for n, _ in model.named_parameters() if n not in done]
    if missing:
        raise RuntimeError(f"parameters left at their initial values: {missing}")


# ---------------------------------------------------------------------------
# Model builders
# ---------------------------------------------------------------------------

def build_timm(depths, dims, num_classes, conv_mlp=False, v2=False):
    from timm.models.convnext import ConvNeXt
    kwargs = dict(depths=depths, dims=dims, num_classes=num_classes, conv_mlp=conv_mlp, drop_path_rate=0.0)
    if v2:
        kwargs.update(use_grn=True, ls_init_value=None)
    return ConvNeXt(**kwargs)


def build_torchvision(depths, dims, num_classes):
    from torchvision.models.convnext import ConvNeXt, CNBlockConfig
    settings = []
    for i, (d, c) in enumerate(zip(depths, dims)):
        settings.append(CNBlockConfig(c, dims[i + 1] if i + 1 < len(dims) else None, d))
    return ConvNeXt(block_setting=settings, num_classes=num_classes, stochastic_depth_prob=0.0)


@dataclass
class Spec:
    name: str
    family: str
    source: str  # timm | torchvision | reference | isotropic
    exporter: str  # legacy | dynamo
    opset: int | None  # None: exporter default (dynamo)
    build: Callable[[], nn.Module]
    depths: tuple
    dims: tuple
    num_classes: int
    input_shape: tuple  # (N, C, H, W) of input.npy
    input2_shape: tuple | None = None  # second case for dynamic models
    dynamic_batch: bool = False
    dynamic_hw: bool = False
    seed: int = 0
    notes: str = ""


def small_specs() -> list[Spec]:
    A_DEPTHS, A_DIMS = (1, 1, 2, 1), (8, 16, 24, 32)
    B_DEPTHS, B_DIMS = (2, 1, 3, 1), (16, 32, 48, 64)
    specs = [
        Spec("timm_linear_op13", "convnext", "timm", "legacy", 13,
             lambda: build_timm(A_DEPTHS, A_DIMS, 10), A_DEPTHS, A_DIMS, 10,
             (1, 3, 32, 32), (3, 3, 32, 32), dynamic_batch=True, seed=301),
        Spec("timm_linear_op17", "convnext", "timm", "legacy", 17,
             lambda: build_timm(B_DEPTHS, A_DIMS, 17), B_DEPTHS, A_DIMS, 17,
             (1, 3, 32, 32), (1, 3, 64, 96), dynamic_hw=True, seed=102),
        # 64x64: the last stage is 2x2, so the dynamo exporter lowers timm's AdaptiveAvgPool2d(1)
        # through as_strided (Shape/Squeeze/Range/Unsqueeze/Gather with a dynamic batch).
        Spec("timm_linear_dynamo", "convnext", "timm", "dynamo", None,
             lambda: build_timm(A_DEPTHS, A_DIMS, 10), A_DEPTHS, A_DIMS, 10,
             (1, 3, 64, 64), (3, 3, 64, 64), dynamic_batch=True, seed=310),
        Spec("timm_linear_dynamo_hw", "convnext", "timm", "dynamo", None,
             lambda: build_timm(A_DEPTHS, A_DIMS, 17), A_DEPTHS, A_DIMS, 17,
             (1, 3, 64, 64), (2, 3, 64, 96), dynamic_batch=True, dynamic_hw=True, seed=312,
             notes="dynamic batch, height and width"),
        Spec("timm_convmlp_op17", "convnext-convmlp", "timm", "legacy", 17,
             lambda: build_timm(B_DEPTHS, A_DIMS, 10, conv_mlp=True), B_DEPTHS, A_DIMS, 10,
             (1, 3, 32, 32), seed=104),
        Spec("timm_convmlp_op13", "convnext-convmlp", "timm", "legacy", 13,
             lambda: build_timm(A_DEPTHS, A_DIMS, 17, conv_mlp=True), A_DEPTHS, A_DIMS, 17,
             (1, 3, 32, 32), seed=105),
        Spec("torchvision_op17", "convnext", "torchvision", "legacy", 17,
             lambda: build_torchvision(A_DEPTHS, A_DIMS, 10), A_DEPTHS, A_DIMS, 10,
             (1, 3, 32, 32), seed=106),
        Spec("torchvision_dynamo", "convnext", "torchvision", "dynamo", None,
             lambda: build_torchvision(A_DEPTHS, A_DIMS, 17), A_DEPTHS, A_DIMS, 17,
             (1, 3, 32, 32), (3, 3, 32, 32), dynamic_batch=True, seed=107),
        Spec("v2_op17", "convnext-v2", "timm", "legacy", 17,
             lambda: build_timm(B_DEPTHS, A_DIMS, 10, v2=True), B_DEPTHS, A_DIMS, 10,
             (1, 3, 64, 64), seed=307),
        Spec("v2_dynamo", "convnext-v2", "timm", "dynamo", None,
             lambda: build_timm(A_DEPTHS, A_DIMS, 17, v2=True), A_DEPTHS, A_DIMS, 17,
             (1, 3, 64, 64), (2, 3, 64, 64), dynamic_batch=True, seed=109),
        Spec("reference_op13", "convnext", "reference", "legacy", 13,
             lambda: RefConvNeXt(num_classes=10, depths=(2, 1, 1, 1), dims=B_DIMS), (2, 1, 1, 1), B_DIMS, 10,
             (1, 3, 32, 32), (3, 3, 32, 32), dynamic_batch=True, seed=110),
        Spec("reference_op17", "convnext", "reference", "legacy", 17,
             lambda: RefConvNeXt(num_classes=17, depths=A_DEPTHS, dims=A_DIMS), A_DEPTHS, A_DIMS, 17,
             (1, 3, 64, 64), seed=111),
        Spec("isotropic_op13", "convnext-isotropic", "isotropic", "legacy", 13,
             lambda: IsotropicConvNeXt(num_classes=10, depth=3, dim=32), (3,), (32,), 10,
             (1, 3, 64, 64), seed=311),
        Spec("timm_linear_b2_op17", "convnext", "timm", "legacy", 17,
             lambda: build_timm(A_DEPTHS, A_DIMS, 10), A_DEPTHS, A_DIMS, 10,
             (2, 3, 32, 32), seed=300, notes="fixed batch 2"),
    ]
    return specs


def large_specs() -> list[Spec]:
    import timm

    def tiny():
        return timm.create_model("convnext_tiny", pretrained=False, num_classes=1000)

    depths, dims = (3, 3, 9, 3), (96, 192, 384, 768)
    common = dict(build=tiny, depths=depths, dims=dims, num_classes=1000,
                  input_shape=(1, 3, 224, 224), input2_shape=(2, 3, 224, 224), dynamic_batch=True)
    return [
        Spec("convnext_tiny_op13", "convnext", "timm", "legacy", 13, seed=201, **common),
        Spec("convnext_tiny_op17", "convnext", "timm", "legacy", 17, seed=202, **common),
        Spec("convnext_tiny_dynamo", "convnext", "timm", "dynamo", None, seed=203, **common),
    ]


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------

def export_legacy(model, example, path, spec: Spec):
    dynamic_axes = None
    axes = {}
    if spec.dynamic_batch:
        axes[0] = BATCH_DIM
    if spec.dynamic_hw:
        axes[2] = HEIGHT_DIM
        axes[3] = WIDTH_DIM
    if axes:
        dynamic_axes = {INPUT_NAME: dict(axes), OUTPUT_NAME: {0: BATCH_DIM} if spec.dynamic_batch else {}}
        if not dynamic_axes[OUTPUT_NAME]:
            del dynamic_axes[OUTPUT_NAME]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), path, dynamo=False, opset_version=spec.opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes, do_constant_folding=True,
        )


def export_dynamo(model, example, path, spec: Spec):
    dynamic_shapes = None
    if spec.dynamic_batch or spec.dynamic_hw:
        dims = {}
        if spec.dynamic_batch:
            dims[0] = torch.export.Dim(BATCH_DIM, min=1, max=4096)
        if spec.dynamic_hw:
            dims[2] = torch.export.Dim(HEIGHT_DIM, min=32, max=4096)
            dims[3] = torch.export.Dim(WIDTH_DIM, min=32, max=4096)
        dynamic_shapes = (dims,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {}
        if spec.opset is not None:
            kwargs["opset_version"] = spec.opset
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes, verbose=False, **kwargs,
        )
    program.save(path, external_data=True)
    data_path = path + ".data"
    if not os.path.exists(data_path):
        # Force every initializer into model.onnx.data.
        m = onnx.load(path)
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(data_path), size_threshold=0)


# ---------------------------------------------------------------------------
# Inspection helpers
# ---------------------------------------------------------------------------

def _dim_repr(d):
    if d.HasField("dim_value"):
        return d.dim_value
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def _value_info(vi):
    t = vi.type.tensor_type
    return {
        "name": vi.name,
        "elem_type": onnx.TensorProto.DataType.Name(t.elem_type),
        "shape": [_dim_repr(d) for d in t.shape.dim],
    }


_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def _tensor_storage(t: onnx.TensorProto) -> str:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return "external"
    if t.HasField("raw_data"):
        return "raw_data"
    for f in _TYPED_FIELDS:
        if len(getattr(t, f)):
            return f
    return "empty"


def inspect_model(path: str) -> dict:
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    ops = collections.Counter()
    domains = collections.Counter()

    def walk(graph):
        for n in graph.node:
            ops[n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}::{n.op_type}"] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)
    walk(g)
    for fn in m.functions:
        domains[f"function:{fn.domain}::{fn.name}"] += 1

    init_storage = collections.Counter(_tensor_storage(t) for t in g.initializer)
    init_dtypes = collections.Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in g.initializer)
    const_storage = collections.Counter()
    const_dtypes = collections.Counter()
    const_attr_kinds = collections.Counter()
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                const_attr_kinds[a.name] += 1
                if a.type == onnx.AttributeProto.TENSOR:
                    const_storage[_tensor_storage(a.t)] += 1
                    const_dtypes[onnx.TensorProto.DataType.Name(a.t.data_type)] += 1
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    value_types = collections.Counter()
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        value_types[onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)] += 1
    return {
        "ir_version": m.ir_version,
        "opset_import": opsets,
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "ops": dict(sorted(ops.items())),
        "node_count": sum(ops.values()),
        "functions": dict(domains),
        "inputs": [_value_info(v) for v in g.input],
        "outputs": [_value_info(v) for v in g.output],
        "initializers": {
            "count": len(g.initializer),
            "storage": dict(init_storage),
            "dtypes": dict(init_dtypes),
        },
        "constant_nodes": {
            "count": sum(const_attr_kinds.values()),
            "attribute_kinds": dict(const_attr_kinds),
            "storage": dict(const_storage),
            "dtypes": dict(const_dtypes),
        },
        "value_info_dtypes": dict(value_types),
    }


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def ort_session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def make_input(shape, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32)


def build_fixture(spec: Spec, out_root: str) -> dict:
    t0 = time.time()
    torch.manual_seed(spec.seed)
    model = spec.build()
    randomize_parameters(model, spec.seed)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())

    out_dir = os.path.join(out_root, spec.name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    path = os.path.join(out_dir, "model.onnx")

    shapes = [spec.input_shape] + ([spec.input2_shape] if spec.input2_shape else [])
    inputs = [make_input(s, spec.seed * 10 + i) for i, s in enumerate(shapes)]

    # Trace with a batch of 2 for dynamic batch (torch.export specialises size-1 dims).
    example_shape = list(spec.input_shape)
    if spec.dynamic_batch:
        example_shape[0] = 2
    example = torch.from_numpy(make_input(tuple(example_shape), spec.seed * 10 + 9))

    if spec.exporter == "legacy":
        export_legacy(model, example, path, spec)
    elif spec.exporter == "dynamo":
        export_dynamo(model, example, path, spec)
    else:
        raise ValueError(spec.exporter)
    onnx.checker.check_model(path)

    info = inspect_model(path)
    sess = ort_session(path)
    in_name = sess.get_inputs()[0].name
    cases = []
    all_logits = []
    for i, x in enumerate(inputs):
        suffix = "" if i == 0 else str(i + 1)
        with torch.inference_mode():
            t_out = model(torch.from_numpy(x)).numpy().astype(np.float32)
        o_out = sess.run(None, {in_name: x})[0].astype(np.float32)
        if o_out.shape != t_out.shape:
            raise RuntimeError(f"{spec.name}: shape mismatch ORT {o_out.shape} vs torch {t_out.shape}")
        max_abs = float(np.max(np.abs(o_out - t_out)))
        scale = float(np.max(np.abs(t_out)))
        rel = max_abs / scale
        if not rel <= REL_TOLERANCE:
            raise RuntimeError(f"{spec.name} case {i}: ORT vs torch rel diff {rel:.3e} > {REL_TOLERANCE}")
        std = float(o_out.std(axis=1).min())
        if not std > 1e-2 * max(scale, 1e-6):
            raise RuntimeError(f"{spec.name} case {i}: degenerate logits (std across classes {std})")
        np.save(os.path.join(out_dir, f"input{suffix}.npy"), x)
        np.save(os.path.join(out_dir, f"expected{suffix}.npy"), o_out)
        np.save(os.path.join(out_dir, f"torch_expected{suffix}.npy"), t_out)
        all_logits.append(o_out)
        cases.append({
            "input": f"input{suffix}.npy",
            "expected": f"expected{suffix}.npy",
            "torch_expected": f"torch_expected{suffix}.npy",
            "input_shape": list(x.shape),
            "output_shape": list(o_out.shape),
            "torch_vs_ort_max_abs_diff": max_abs,
            "torch_vs_ort_rel_diff": rel,
            "max_abs_logit": scale,
            "min_logit_std_across_classes": std,
            "top1": [int(v) for v in o_out.argmax(axis=1)],
        })
    top1 = [t for c in cases for t in c["top1"]]

    # Input sensitivity: logits must depend on the input, not only on the biases.
    probe = torch.from_numpy(make_input((8,) + tuple(spec.input_shape[1:]), spec.seed * 10 + 7))
    with torch.inference_mode():
        p_out = model(probe).numpy()
    sensitivity = float(p_out.std(axis=0).mean() / p_out.std(axis=1).mean())
    if not sensitivity > 0.1:
        raise RuntimeError(f"{spec.name}: logits barely depend on the input (sensitivity {sensitivity:.3f})")
    files = sorted(os.listdir(out_dir))
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in files)
    entry = {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "exporter": spec.exporter,
        "opset": info["opset_import"].get("ai.onnx"),
        "ir_version": info["ir_version"],
        "dynamic_batch": spec.dynamic_batch,
        "dynamic_hw": spec.dynamic_hw,
        "depths": list(spec.depths),
        "dims": list(spec.dims),
        "num_classes": spec.num_classes,
        "num_parameters": n_params,
        "external_data": "model.onnx.data" if os.path.exists(path + ".data") else None,
        "input_name": info["inputs"][0]["name"],
        "output_name": info["outputs"][0]["name"],
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "cases": cases,
        "torch_vs_ort_max_abs_diff": max(c["torch_vs_ort_max_abs_diff"] for c in cases),
        "distinct_top1": len(set(top1)),
        "samples": len(top1),
        "input_sensitivity": sensitivity,
        "probe_distinct_top1_of_8": len(set(int(v) for v in p_out.argmax(axis=1))),
        "ops": info["ops"],
        "node_count": info["node_count"],
        "opset_import": info["opset_import"],
        "producer": info["producer"],
        "functions": info["functions"],
        "initializers": info["initializers"],
        "constant_nodes": info["constant_nodes"],
        "files": files,
        "size_bytes": size,
        "notes": spec.notes,
    }
    print(f"== {spec.name}: {spec.source}/{spec.exporter} opset {entry['opset']} ir {entry['ir_version']} "
          f"params {n_params} size {size/1024:.1f} KiB ({time.time()-t0:.1f}s)")
    print(f"   inputs {info['inputs']}  outputs {info['outputs']}")
    print(f"   ops {info['ops']}")
    print(f"   initializers {info['initializers']}  constants {info['constant_nodes']}")
    print(f"   torch vs ORT max abs diff {entry['torch_vs_ort_max_abs_diff']:.3e}; "
          f"top1 {top1} ({entry['distinct_top1']} distinct of {len(top1)}); input sensitivity "
          f"{sensitivity:.2f}, {entry['probe_distinct_top1_of_8']} distinct top-1 over 8 probes")
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-size", nargs="?", const=DEFAULT_LARGE_OUT, default=None, metavar="OUTDIR",
                    help="export full-size convnext_tiny with every exporter into OUTDIR (default Fixtures/large)")
    ap.add_argument("--out", default=DEFAULT_SMALL_OUT, help="output directory for the small fixtures")
    ap.add_argument("--only", nargs="*", help="only these fixture names")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.time()
    if args.full_size:
        out_root, specs = os.path.abspath(args.full_size), large_specs()
    else:
        out_root, specs = os.path.abspath(args.out), small_specs()
    if args.only:
        specs = [s for s in specs if s.name in set(args.only)]
    os.makedirs(out_root, exist_ok=True)
    entries = [build_fixture(s, out_root) for s in specs]

    manifest_path = os.path.join(out_root, "manifest.json")
    if args.only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = {e["name"]: e for e in json.load(f)}
        for e in entries:
            old[e["name"]] = e
        order = [s.name for s in (large_specs() if args.full_size else small_specs())]
        entries = [old[n] for n in order if n in old]
    with open(manifest_path, "w") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")
    total = sum(e["size_bytes"] for e in entries)
    print(f"wrote {len(entries)} fixtures to {out_root} ({total/1024/1024:.2f} MiB) in {time.time()-t0:.1f}s")
    print(f"versions: torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
