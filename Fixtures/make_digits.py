#!/usr/bin/env python3
"""Train the bundled digits model: a small timm ConvNeXt on scikit-learn's handwritten digits.

Usage (from the repository root, after `bash Fixtures/setup_venv.sh`):
    .venv-fixtures/bin/python Fixtures/make_digits.py        # rewrites Fixtures/digits/ (a few minutes on 2 cores)

The 8x8 digits (grey levels 0..16) become 8-bit images (v * 255 / 16, rounded), upscaled 4x by
pixel repetition to 32x32 and repeated on three channels. The tensors are what torchvision makes
of those images: ToTensor (x / 255) then Normalize(mean, std), with one mean and std measured on
the training split and rounded to 4 decimals. Size 32 and crop_pct 1.0 make Resize and CenterCrop
the identity, so the PNG folder and the .npy split give the same tensors.

Everything is seeded and torch runs deterministic algorithms on 2 threads, so a rerun on the same
versions and the same kind of CPU gives the same files, byte for byte (about a minute on 2
idle cores).

Writes Fixtures/digits/:
    model.onnx            legacy exporter, opset 17, input `input` [batch, 3, 32, 32], output `logits` [batch, 10]
    calib.npy             float32 [256, 3, 32, 32]: a calibration split drawn from the training split
    test.npy              float32 [360, 3, 32, 32]: the held-out split (stratified)
    test_labels.npy       int64 [360]
    test_expected.npy     float32 [360, 10]: ONNX Runtime CPU logits on test.npy
    test_png/<d>/<i>.png  the held-out split as 32x32 RGB PNGs by class; <i> is the row in test.npy
    info.json             accuracies (PyTorch float32 and ONNX Runtime), mean/std, split sizes, training settings
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
import warnings

import numpy as np
import onnxruntime as ort
import timm
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "digits")

SEED = 0
TEST_SIZE = 360
CALIB_SIZE = 256
DEPTHS = (2, 2, 2, 2)
DIMS = (24, 48, 64, 80)
EPOCHS = 40
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 0.05


def seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


def images() -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 RGB images [N, 32, 32, 3] and their labels [N]."""
    digits = load_digits()
    grey = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)          # [N, 8, 8]
    big = np.kron(grey, np.ones((4, 4), dtype=np.uint8))                     # [N, 32, 32]
    rgb = np.repeat(big[..., None], 3, axis=-1)                              # [N, 32, 32, 3]
    return np.ascontiguousarray(rgb), digits.target.astype(np.int64)


def to_tensors(rgb: np.ndarray, mean: float, std: float) -> np.ndarray:
    """torchvision's eval transform for size 32, crop_pct 1.0, on every image: float32 [N, 3, 32, 32]."""
    transform = T.Compose([
        T.Resize(32, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(32),
        T.ToTensor(),
        T.Normalize([mean] * 3, [std] * 3),
    ])
    return np.stack([transform(Image.fromarray(im)).numpy() for im in rgb]).astype(np.float32)


def make_model() -> torch.nn.Module:
    from timm.models.convnext import ConvNeXt
    return ConvNeXt(in_chans=3, num_classes=10, depths=DEPTHS, dims=DIMS, ls_init_value=0.1, drop_path_rate=0.0)


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> list[float]:
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(xs) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    losses = []
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(xs), generator=g)
        total = 0.0
        for i in range(0, len(xs), BATCH):
            idx = order[i:i + BATCH]
            xb, yb = xs[idx], ys[idx]
            # Shift by up to one original pixel (4 px) with wrap-around: cheap augmentation.
            dy, dx = (int(v) * 4 for v in torch.randint(-1, 2, (2,), generator=g))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        losses.append(total / len(xs))
        print(f"epoch {epoch + 1:2d}/{EPOCHS}: loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return losses


def main() -> None:
    start = time.time()
    seed_everything()
    rgb, labels = images()
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(index, test_size=TEST_SIZE, stratify=labels, random_state=SEED)
    test_idx = np.sort(test_idx)
    rng = np.random.default_rng(SEED)
    calib_idx = np.sort(rng.choice(train_idx, size=CALIB_SIZE, replace=False))

    pixels = rgb[train_idx, :, :, 0].astype(np.float64) / 255.0
    mean, std = round(float(pixels.mean()), 4), round(float(pixels.std()), 4)

    x_train = to_tensors(rgb[train_idx], mean, std)
    x_test = to_tensors(rgb[test_idx], mean, std)
    x_calib = to_tensors(rgb[calib_idx], mean, std)
    y_train, y_test = labels[train_idx], labels[test_idx]

    model = make_model()
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters; {len(train_idx)} training, {len(test_idx)} test samples; mean {mean}, std {std}")
    losses = train(model, x_train, y_train)

    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    torch_pred = torch_logits.argmax(1)
    torch_correct = int((torch_pred == y_test).sum())
    top2 = np.sort(torch_logits, axis=1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0]).min())

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    onnx_path = os.path.join(OUT, "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, torch.from_numpy(x_test[:1]), onnx_path, dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    ort_logits = session.run(None, {"input": x_test})[0].astype(np.float32)
    ort_correct = int((ort_logits.argmax(1) == y_test).sum())
    ort_agreement = int((ort_logits.argmax(1) == torch_pred).sum())

    np.save(os.path.join(OUT, "test.npy"), x_test)
    np.save(os.path.join(OUT, "test_labels.npy"), y_test.astype(np.int64))
    np.save(os.path.join(OUT, "calib.npy"), x_calib)
    np.save(os.path.join(OUT, "test_expected.npy"), ort_logits)
    for row, i in enumerate(test_idx):
        folder = os.path.join(OUT, "test_png", str(labels[i]))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(rgb[i]).save(os.path.join(folder, f"{row:04d}.png"), optimize=True)

    info = {
        "model": {"family": "timm", "depths": list(DEPTHS), "dims": list(DIMS), "num_classes": 10,
                  "parameters": params, "ls_init_value": 0.1},
        "input_size": [3, 32, 32],
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "mean": [mean] * 3,
        "std": [std] * 3,
        "class_names": [str(d) for d in range(10)],
        "samples": {"train": len(train_idx), "test": len(test_idx), "calib": len(calib_idx)},
        "torch_top1_accuracy": torch_correct / len(test_idx),
        "torch_correct": torch_correct,
        "ort_top1_accuracy": ort_correct / len(test_idx),
        "ort_correct": ort_correct,
        "ort_torch_top1_agreement": ort_agreement / len(test_idx),
        "ort_torch_max_abs_diff": float(np.abs(ort_logits - torch_logits).max()),
        "smallest_top1_margin": margin,
        "training": {"seed": SEED, "epochs": EPOCHS, "batch": BATCH, "optimizer": "AdamW", "lr": LR,
                     "weight_decay": WEIGHT_DECAY, "schedule": "one-cycle", "label_smoothing": 0.1,
                     "augmentation": "random shift by -4, 0 or 4 pixels", "final_loss": losses[-1],
                     "threads": 2},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "onnxruntime": ort.__version__},
    }
    with open(os.path.join(OUT, "info.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps({k: info[k] for k in ("torch_top1_accuracy", "ort_top1_accuracy", "smallest_top1_margin")}))
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
