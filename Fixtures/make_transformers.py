#!/usr/bin/env python3
"""Hugging Face transformers ConvNeXt folders, and what transformers itself makes of the photos.

Usage (from the repository root, after `bash Fixtures/setup_venv.sh`):
    .venv-fixtures/bin/python Fixtures/make_transformers.py    # rewrites Fixtures/transformers/ (about 20 s)

The oracle is transformers' own code: the PIL backend of `ConvNextImageProcessor`
(`AutoImageProcessor.from_pretrained(folder, backend="pil")`, what `use_fast=False` gives) and
the model classes, on the photographs of Fixtures/images/ (china.jpg, flower.jpg and flower.png,
which holds flower.jpg's pixels as PIL decodes them), opened with `Image.open(path).convert("RGB")`.

Writes Fixtures/transformers/:

    <model>/config.json, model.safetensors    save_pretrained of a small random-weight model
                                              (hidden_sizes 8, 16, 32, 64; depths 1, 1, 2, 1; 1000
                                              labels with their own id2label names), under 600 KB
    <model>/preprocessor_config.json          the image processor's configuration
    <model>/model.onnx                        the legacy (opset 17) ONNX export of the same weights,
                                              input pixel_values, output logits, dynamic batch
    <model>/<photo>_logits.npy                transformers' float32 logits [1, 1000] for the photo
    <model>/expected.json                     per photo: the pixel case, softmax top 5 (ids, labels,
                                              probabilities), and ONNX Runtime's largest logit
                                              difference from PyTorch on the same pixels
    pixels/<case>/preprocessor_config.json    a processor configuration
    pixels/<case>/<photo>.npy                 its float32 pixel_values [1, 3, H, W] for the photo
    manifest.json                             every model and pixel case, and the versions used

Models:
    convnext_224         ConvNextForImageClassification; processor shortest_edge 224, crop_pct
                         0.875, bicubic, ImageNet mean/std (pixel case crop224)
    convnextv2_384       ConvNextV2ForImageClassification, random GRN; processor shortest_edge 384
                         (square resize, no crop), transformers' default mean/std 0.5 (square384)
    convnextv2_zero_grn  ConvNextV2ForImageClassification with every GRN weight and bias left at zero,
                         their initial value (as checkpoints ship them); a legacy processor file
                         (`"size": 224`, `feature_extractor_type`, no rescale keys), which gives
                         the same pixel_values as crop224

Every other parameter is random and away from its initial value (make_checkpoints.randomize_all:
convolutions and linears N(0, 1/fan_in), biases N(0, 0.1), every LayerNorm's weight +-[0.5, 1.5]
and bias N(0, 0.3), layer scale U(0.1, 1), GRN N(0, 0.5)), the classifier's weight then scaled by
4 so that the top classes take a real share of the probability.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnxruntime as ort
import PIL
import torch
import torch.nn as nn
import torchvision
import transformers
from PIL import Image
from transformers import (
    AutoImageProcessor,
    ConvNextConfig,
    ConvNextForImageClassification,
    ConvNextV2Config,
    ConvNextV2ForImageClassification,
)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_checkpoints import randomize_all  # noqa: E402  (every parameter random, whatever module holds it)

OUT = os.path.join(HERE, "transformers")
IMAGES = os.path.join(HERE, "images")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
HIDDEN_SIZES = [8, 16, 32, 64]
DEPTHS = [1, 1, 2, 1]
CLASSES = 1000
CLASSIFIER_GAIN = 4.0

# Photos: file -> the name of the pixel file its pixels are stored under (flower.png decodes
# to flower.jpg's pixels, so it shares them).
PHOTOS = {"china.jpg": "china", "flower.jpg": "flower", "flower.png": "flower"}
SMALL = "variants/rgb8.png"   # 23 x 17: the processor upsamples it


def processor_config(shortest_edge: int, **extra) -> dict:
    """A preprocessor_config.json as ConvNextImageProcessor.save_pretrained writes it."""
    cfg = {
        "crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "ConvNextImageProcessor",
        "image_std": [0.5, 0.5, 0.5], "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": shortest_edge},
    }
    cfg.update(extra)
    return cfg


# The legacy form the hub's facebook/convnext-* folders still carry.
LEGACY_224 = {
    "crop_pct": 0.875, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 3, "size": 224,
}

# name: (configuration, images). Crop sizes are chosen so that the crop offset (L - s) / 2 is
# x.5 with x odd where it matters: transformers floors it, torchvision's CenterCrop rounds it
# half to even, so the two differ by a pixel (china at 224: 383 - 224 = 159).
PIXEL_CASES = {
    "crop224": (processor_config(224, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD), ["china", "flower"]),
    "square384": (processor_config(384), ["china", "flower"]),
    # Every PIL filter (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), shrinking
    # the photo (640 x 427 -> 119 x 80, crop 64) and enlarging the 23 x 17 image (-> 67 x 50, crop 40).
    **{f"{name}64": (processor_config(64, crop_pct=0.8, resample=code), ["china"])
       for code, name in enumerate(["nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"])},
    **{f"{name}40_up": (processor_config(40, crop_pct=0.8, resample=code), ["small"])
       for code, name in enumerate(["nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"])},
    # crop_pct above 1: resize to 49 x 73, then the crop pads 15 rows (8 above, as transformers does).
    "pad64": (processor_config(64, crop_pct=1.3), ["china"]),
    # No rescale, no normalisation: pixel values 0...255.
    "raw64": (processor_config(64, do_rescale=False, do_normalize=False, resample=2), ["china"]),
    # Another rescale factor, scalar mean and std: [-1, 1].
    "rescale64": (processor_config(64, rescale_factor=1 / 127.5, image_mean=1.0, image_std=1.0), ["china"]),
}

MODELS = {
    "convnext_224": ("v1", "crop224", False),
    "convnextv2_384": ("v2", "square384", False),
    "convnextv2_zero_grn": ("v2", "crop224", True),
}


def label_names() -> dict[int, str]:
    """Names unlike torchvision's ImageNet list (which `run` falls back to for 1000 classes), so a
    test can tell that they came from config.json."""
    imagenet = torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta["categories"]
    return {i: f"synset {i:03d}: {imagenet[(i * 389) % CLASSES]}" for i in range(CLASSES)}


def build_model(kind: str, seed: int, zero_grn: bool) -> nn.Module:
    names = label_names()
    common = dict(hidden_sizes=HIDDEN_SIZES, depths=DEPTHS, num_labels=CLASSES, id2label=names,
                  label2id={v: k for k, v in names.items()})
    if kind == "v1":
        model = ConvNextForImageClassification(ConvNextConfig(**common))
    else:
        model = ConvNextV2ForImageClassification(ConvNextV2Config(**common))
    randomize_all(model, seed)
    with torch.no_grad():
        model.classifier.weight.mul_(CLASSIFIER_GAIN)
        for name, p in model.named_parameters():
            if ".grn." in name and zero_grn:
                p.zero_()
    return model.eval()


class LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: nn.Module, example: torch.Tensor, path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model), (example,), path, input_names=["pixel_values"], output_names=["logits"],
                          opset_version=17, dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)


def ort_run(path: str, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixel_values": x})[0]


def pil_processor(folder: str):
    p = AutoImageProcessor.from_pretrained(folder, backend="pil")
    assert type(p).__name__ == "ConvNextImageProcessorPil", type(p).__name__
    return p


def open_rgb(path: str) -> Image.Image:
    return Image.open(path).convert("RGB")


def photo_path(name: str) -> str:
    return os.path.join(IMAGES, SMALL if name == "small" else f"{name}.jpg")


def make_pixel_cases() -> list[dict]:
    cases = []
    for case, (cfg, photos) in PIXEL_CASES.items():
        folder = os.path.join(OUT, "pixels", case)
        os.makedirs(folder)
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        processor = pil_processor(folder)
        entries = []
        for name in photos:
            x = processor(open_rgb(photo_path(name)), return_tensors="np")["pixel_values"].astype(np.float32)
            np.save(os.path.join(folder, f"{name}.npy"), x)
            image = SMALL if name == "small" else f"{name}.jpg"
            entries.append({"image": image, "pixels": f"pixels/{case}/{name}.npy", "shape": list(x.shape)})
            if name == "flower":
                png = processor(open_rgb(os.path.join(IMAGES, "flower.png")), return_tensors="np")["pixel_values"]
                assert np.array_equal(png, x), "flower.png must give flower.jpg's pixel_values"
                entries.append({"image": "flower.png", "pixels": f"pixels/{case}/{name}.npy", "shape": list(x.shape)})
        cases.append({"name": case, "folder": f"pixels/{case}", "images": entries})
    return cases


def make_model(name: str, kind: str, pixel_case: str, zero_grn: bool, seed: int) -> dict:
    folder = os.path.join(OUT, name)
    model = build_model(kind, seed, zero_grn)
    model.save_pretrained(folder)
    cfg = LEGACY_224 if zero_grn else PIXEL_CASES[pixel_case][0]
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    # What a user would do: load the folder back with transformers and preprocess with it.
    cls = ConvNextForImageClassification if kind == "v1" else ConvNextV2ForImageClassification
    loaded = cls.from_pretrained(folder).eval()
    processor = pil_processor(folder)
    for (a_name, a), (b_name, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert a_name == b_name and torch.equal(a, b), a_name
    grn = [p for n, p in loaded.named_parameters() if ".grn." in n]
    assert (kind == "v2") == bool(grn) and all(bool((p == 0).all()) == zero_grn for p in grn)

    side = PIXEL_CASES[pixel_case][0]["size"]["shortest_edge"]
    export_onnx(loaded, torch.zeros(1, 3, side, side), os.path.join(folder, "model.onnx"))
    photos = {}
    for image, stem in PHOTOS.items():
        x = processor(open_rgb(os.path.join(IMAGES, image)), return_tensors="np")["pixel_values"].astype(np.float32)
        stored = np.load(os.path.join(OUT, "pixels", pixel_case, f"{stem}.npy"))
        assert np.array_equal(x, stored), f"{name}: {image} must give pixel case {pixel_case}'s values"
        with torch.no_grad():
            logits = loaded(pixel_values=torch.from_numpy(x)).logits.numpy().astype(np.float32)
        probs = torch.softmax(torch.from_numpy(logits[0]).double(), dim=0).numpy()
        top = np.argsort(-probs, kind="stable")[:5]
        ort_logits = ort_run(os.path.join(folder, "model.onnx"), x)
        np.save(os.path.join(folder, f"{stem}_logits.npy"), logits)
        photos[image] = {
            "pixels": f"pixels/{pixel_case}/{stem}.npy",
            "logits": f"{name}/{stem}_logits.npy",
            "top5": [int(i) for i in top],
            "top5_labels": [loaded.config.id2label[int(i)] for i in top],
            "top5_probabilities": [float(probs[i]) for i in top],
            "ort_max_abs_logit_difference": float(np.abs(ort_logits - logits).max()),
            "max_abs_logit": float(np.abs(logits).max()),
        }
        assert photos[image]["ort_max_abs_logit_difference"] <= 1e-4 * photos[image]["max_abs_logit"]
    expected = {"model": name, "class": type(loaded).__name__, "pixel_case": pixel_case, "photos": photos}
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    size = os.path.getsize(os.path.join(folder, "model.safetensors"))
    assert size < 1_000_000, size
    return {"name": name, "class": type(loaded).__name__, "family": "ConvNeXt" if kind == "v1" else "ConvNeXt V2",
            "hidden_sizes": HIDDEN_SIZES, "depths": DEPTHS, "num_labels": CLASSES, "zero_grn": zero_grn,
            "pixel_case": pixel_case, "layer_norm_eps": loaded.config.layer_norm_eps,
            "hidden_act": loaded.config.hidden_act, "safetensors_bytes": size, "photos": photos}


def main() -> None:
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    torch.manual_seed(0)
    pixel_cases = make_pixel_cases()
    models = [make_model(name, kind, case, zero, seed) for seed, (name, (kind, case, zero)) in enumerate(MODELS.items(), 11)]
    manifest = {
        "pixel_cases": pixel_cases,
        "models": models,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "onnxruntime": ort.__version__, "pillow": PIL.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    for m in models:
        for image, p in m["photos"].items():
            print(f"{m['name']:20s} {image:11s} top5 {p['top5']} p {[round(v, 4) for v in p['top5_probabilities']]}"
                  f" ort {p['ort_max_abs_logit_difference']:.1e}")
    print(f"wrote {len(pixel_cases)} pixel cases and {len(models)} models to {OUT}")


if __name__ == "__main__":
    main()
