#!/usr/bin/env python3
"""Expected preprocessed tensors for the image pipeline, made with torchvision's transforms.

Usage (from the repository root, after `bash Fixtures/setup_venv.sh`):
    .venv-fixtures/bin/python Fixtures/make_images.py                     # rewrites Fixtures/images/ (a few seconds)
    .venv-fixtures/bin/python Fixtures/make_images.py --imagenet-classes  # rewrites Sources/CNXValidate/ImageNetClasses.swift

The photographs are scikit-learn's two sample images (china.jpg, flower.jpg, 640x427), copied
from the sklearn package. Each expected tensor is float32 [1, 3, size, size]:

    Resize(floor(size / crop_pct), interpolation)   # PIL, shorter side, antialiased
    CenterCrop(size)
    ToTensor()                                      # uint8 -> [0, 1]
    Normalize(mean, std)

Writes Fixtures/images/:
    china.jpg, flower.jpg          the photographs
    flower.png                     flower.jpg as PIL decodes it, stored losslessly (the PNG path)
    <photo>_<case>.npy             expected tensors, cases below; flower.png's are flower's
    variants/<name>.png|.jpg       small images in every PNG colour type and bit depth, interlaced,
                                   and a greyscale and a CMYK JPEG
    variants/<name>.npy            int32 [H, W, 3]: the RGB pixels each decodes to
    manifest.json                  every case and variant
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import zlib

import numpy as np
import sklearn
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "images")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# name: (size, crop_pct, interpolation, photos)
CASES = {
    "bicubic224": (224, 0.875, "bicubic", ["china", "flower"]),      # Resize(256) bicubic, CenterCrop(224): timm's default
    "bilinear224": (224, 0.875, "bilinear", ["china", "flower"]),    # Resize(256) bilinear, CenterCrop(224): torchvision's
    "bicubic160": (160, 0.95, "bicubic", ["china"]),                 # Resize(168), CenterCrop(160): odd offsets
}
MODES = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}


def transform(size: int, crop_pct: float, interpolation: str) -> T.Compose:
    return T.Compose([
        T.Resize(math.floor(size / crop_pct), interpolation=MODES[interpolation]),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def write_png(path: str, pixels: np.ndarray, color_type: int, bit_depth: int, interlaced: bool = False) -> None:
    """A minimal PNG writer for what PIL cannot write (16-bit RGB, Adam7): filter 0 on every row."""
    h, w = pixels.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    data = np.ascontiguousarray(pixels.astype(dtype)).reshape(h, -1)

    def scanlines(rows: np.ndarray) -> bytes:
        return b"".join(b"\x00" + r.tobytes() for r in rows)

    if interlaced:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        px = np.ascontiguousarray(pixels.astype(dtype)).reshape(h, w, -1)
        for x0, y0, dx, dy in passes:
            sub = px[y0::dy, x0::dx]
            if sub.size:
                raw += scanlines(sub.reshape(sub.shape[0], -1))
    else:
        raw = scanlines(data)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def variants(photo: Image.Image) -> list[dict]:
    """Small images in each colour type; expected RGB as PIL's convert('RGB') gives it (16-bit: the high byte)."""
    folder = os.path.join(OUT, "variants")
    os.makedirs(folder)
    small = photo.resize((23, 17), Image.Resampling.BICUBIC)
    rgb = np.asarray(small)
    grey = np.asarray(small.convert("L"))
    alpha = (np.arange(23 * 17).reshape(17, 23) * 7 % 256).astype(np.uint8)
    out = []

    def record(name: str, expected: np.ndarray) -> None:
        np.save(os.path.join(folder, name.rsplit(".", 1)[0] + ".npy"), expected.astype(np.int32))
        out.append({"file": f"variants/{name}", "expected": f"variants/{name.rsplit('.', 1)[0]}.npy"})

    def pil_rgb(path: str) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"))

    saves = {
        "rgb8.png": small,
        "rgba8.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "grey8.png": small.convert("L"),
        "greyalpha8.png": Image.fromarray(np.dstack([grey, alpha]), "LA"),
        "palette.png": small.quantize(colors=37),
        "grey1.png": small.convert("L").point(lambda v: 255 if v > 110 else 0).convert("1"),
    }
    for name, image in saves.items():
        path = os.path.join(folder, name)
        image.save(path)
        record(name, pil_rgb(path))
    # A palette with transparency (tRNS): PIL's convert('RGB') ignores it.
    pal = small.quantize(colors=16)
    path = os.path.join(folder, "palette_trns.png")
    pal.save(path, transparency=bytes(range(0, 256, 16)))
    record("palette_trns.png", pil_rgb(path))
    # 16 bits per channel: the value v * 257 + noise, so that the high byte is v and the low byte is noise.
    noise = ((np.arange(rgb.size).reshape(rgb.shape) * 37) % 251).astype(np.uint16)
    rgb16 = rgb.astype(np.uint16) * 256 + noise
    write_png(os.path.join(folder, "rgb16.png"), rgb16, color_type=2, bit_depth=16)
    record("rgb16.png", rgb16 >> 8)
    grey16 = grey.astype(np.uint16) * 256 + noise[..., 0]
    write_png(os.path.join(folder, "grey16.png"), grey16, color_type=0, bit_depth=16)
    record("grey16.png", np.repeat((grey16 >> 8)[..., None], 3, axis=-1))
    rgba16 = np.dstack([rgb16, alpha.astype(np.uint16) * 257])
    write_png(os.path.join(folder, "rgba16.png"), rgba16, color_type=6, bit_depth=16)
    record("rgba16.png", rgb16 >> 8)
    write_png(os.path.join(folder, "rgb8_interlaced.png"), rgb, color_type=2, bit_depth=8, interlaced=True)
    assert np.array_equal(pil_rgb(os.path.join(folder, "rgb8_interlaced.png")), rgb)
    record("rgb8_interlaced.png", rgb)
    # JPEGs: greyscale, and CMYK (PIL writes Adobe's inverted CMYK).
    path = os.path.join(folder, "grey.jpg")
    small.convert("L").save(path, quality=90)
    record("grey.jpg", pil_rgb(path))
    path = os.path.join(folder, "cmyk.jpg")
    small.convert("CMYK").save(path, quality=95)
    record("cmyk.jpg", pil_rgb(path))
    return out


def write_imagenet_classes() -> None:
    """The ImageNet-1K class names, in class-id order, from torchvision's weights metadata."""
    names = torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(names) == 1000
    path = os.path.join(os.path.dirname(HERE), "Sources", "CNXValidate", "ImageNetClasses.swift")
    lines = [
        "// Generated by Fixtures/make_images.py --imagenet-classes from torchvision's",
        f"// ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta[\"categories\"] (torchvision {torchvision.__version__}). Do not edit.",
        "",
        "/// The ImageNet-1K class names, by class id (0...999), as torchvision names them.",
        "public let imagenetClassNames: [String] = [",
    ]
    lines += ["    " + json.dumps(n) + "," for n in names]
    lines += ["]", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet-classes", action="store_true", help="write Sources/CNXValidate/ImageNetClasses.swift instead")
    if parser.parse_args().imagenet_classes:
        write_imagenet_classes()
        return
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    source = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    photos = {}
    for name in ("china", "flower"):
        shutil.copyfile(os.path.join(source, f"{name}.jpg"), os.path.join(OUT, f"{name}.jpg"))
        photos[name] = Image.open(os.path.join(OUT, f"{name}.jpg")).convert("RGB")
    photos["flower"].save(os.path.join(OUT, "flower.png"))
    assert np.array_equal(np.asarray(Image.open(os.path.join(OUT, "flower.png")).convert("RGB")), np.asarray(photos["flower"]))

    manifest = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "cases": [], "variants": []}
    for case, (size, crop_pct, interpolation, names) in CASES.items():
        for name in names:
            x = transform(size, crop_pct, interpolation)(photos[name]).unsqueeze(0).numpy().astype(np.float32)
            np.save(os.path.join(OUT, f"{name}_{case}.npy"), x)
            files = [f"{name}.jpg"] + (["flower.png"] if name == "flower" else [])
            for f in files:
                manifest["cases"].append({"image": f, "expected": f"{name}_{case}.npy", "size": size,
                                          "crop_pct": crop_pct, "interpolation": interpolation,
                                          "resize": math.floor(size / crop_pct)})
    manifest["variants"] = variants(photos["china"].crop((100, 100, 300, 260)))
    manifest["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                            "pillow": Image.__version__, "sklearn": sklearn.__version__}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {len(manifest['cases'])} cases and {len(manifest['variants'])} variants to {OUT}")


if __name__ == "__main__":
    main()
