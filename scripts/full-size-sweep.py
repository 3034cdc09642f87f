"""Full-size family sweep (slow: not in CI). For every ConvNeXt a user downloads -- each name
timm registers (convnext*, convnextv2*), torchvision's four, transformers' ConvNeXt and ConvNeXt V2
at tiny and base -- at full size, with random weights moved away from their initial values: save
the checkpoint as people get it (state dict as model.safetensors, some also as model.pth;
transformers as a save_pretrained folder), convert it with the release binary, run the .cnx on one
input and compare with PyTorch's logits. The weights are the fixtures' (make_checkpoints.py's
randomize_all: norms, layer scales and GRN included, weights at 1 / sqrt(fan-in)). At full size
the numbers alone barely tell the GELU forms apart (convnext_tiny read with a wrong
--activation gelu_tanh: 1.1e-4) and not a wrong LayerNorm eps (1e-5 for 1e-6: 7e-6); the
assumed values printed beside each line are the check there.

    .venv-fixtures/bin/python scripts/full-size-sweep.py [--binary B] [--max-params N] [NAME ...]

NAME: a timm name, `tv:convnext_tiny`, `hf:v1-tiny` / `hf:v2-base`; none: all of them (about 45
models, about 3 minutes on two Zen 4 cores; --max-params, default 400e6, skips the largest).
Prints a line per form: max |ours - PyTorch| / max |PyTorch| (at most 1e-4), the same top-1,
and the values the converter says it assumed. Exit status 1 when a conversion gives a wrong
answer or fails.
A clean refusal (one error line, exit status 1) is reported as such and is not a failure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4
# The fixtures' randomiser (every parameter of every family far from its initial value, weights at
# 1 / sqrt(fan-in)) and input.
sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
from make_checkpoints import randomize_all  # noqa: E402
from make_fixtures import make_input  # noqa: E402


def build(spec):
    """(model, input size, [forms]) where a form is (file name, writer(model, dir))."""
    from safetensors.torch import save_file

    def safetensors(m, d):
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(d, "model.safetensors"))
        return "model.safetensors"

    def pth(m, d):
        torch.save(m.state_dict(), os.path.join(d, "model.pth"))
        return "model.pth"

    if spec.startswith("tv:"):
        import torchvision
        return getattr(torchvision.models, spec[3:])(weights=None), 224, [safetensors]
    if spec.startswith("hf:"):
        import transformers
        version, size = spec[3:].split("-")
        depths, dims = {"tiny": ([3, 3, 9, 3], [96, 192, 384, 768]), "base": ([3, 3, 27, 3], [128, 256, 512, 1024])}[size]
        if version == "v1":
            config = transformers.ConvNextConfig(depths=depths, hidden_sizes=dims, num_labels=1000)
            model = transformers.ConvNextForImageClassification(config)
        else:
            config = transformers.ConvNextV2Config(depths=depths, hidden_sizes=dims, num_labels=1000)
            model = transformers.ConvNextV2ForImageClassification(config)

        def folder(m, d):
            m.save_pretrained(os.path.join(d, "hf"))
            return "hf"
        return model, 224, [folder]
    import timm
    model = timm.create_model(spec, pretrained=False)
    forms = [safetensors, pth] if spec in ("convnext_tiny", "convnext_atto_rms", "convnextv2_tiny") else [safetensors]
    return model, model.pretrained_cfg["input_size"][-1], forms


def all_specs():
    import timm
    names = sorted(set(timm.list_models("convnext*")))
    return names + [f"tv:convnext_{s}" for s in ("tiny", "small", "base", "large")] + [
        f"hf:{v}-{s}" for v in ("v1", "v2") for s in ("tiny", "base")]


def logits(output):
    return (output.logits if hasattr(output, "logits") else output).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/convnext-convert"))
    ap.add_argument("--max-params", type=float, default=400e6)
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"no binary at {args.binary}: swift build -c release --product convnext-convert")
    failures = 0
    for spec in args.names or all_specs():
        try:
            model, size, forms = build(spec)
        except Exception as e:  # a name this timm cannot build: say so, go on
            print(f"{spec}: not built ({type(e).__name__}: {e})")
            continue
        params = sum(p.numel() for p in model.parameters())
        if params > args.max_params:
            print(f"{spec}: skipped, {params / 1e6:.0f} M parameters (--max-params)")
            continue
        model.eval()
        randomize_all(model, seed=1234)
        x = make_input((1, 3, size, size), seed=0)
        with torch.no_grad():
            expected = logits(model(torch.from_numpy(x)))
        work = tempfile.mkdtemp(prefix="cnx-sweep-")
        try:
            np.save(os.path.join(work, "input.npy"), x)
            for write in forms:
                form = write(model, work)
                cnx, out = os.path.join(work, "model.cnx"), os.path.join(work, "logits.npy")
                conv = subprocess.run([args.binary, "convert", os.path.join(work, form), cnx], capture_output=True, text=True)
                label = f"{spec} ({params / 1e6:.1f} M, {size}px) {form}"
                if conv.returncode != 0:
                    lines = conv.stderr.strip().splitlines()
                    clean = conv.returncode == 1 and len(lines) == 1
                    print(f"{label}: {'refused' if clean else 'FAILED'}: {conv.stderr.strip()[:300]}")
                    failures += not clean
                    continue
                assumed = [l.split(":", 1)[1].strip() for l in conv.stdout.splitlines() if l.strip().startswith("assumed:")]
                run = subprocess.run([args.binary, "run", cnx, "--input", os.path.join(work, "input.npy"), "--output", out],
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    print(f"{label}: RUN FAILED: {run.stderr.strip()[:300]}")
                    failures += 1
                    continue
                ours = np.load(out)
                rel = float(np.abs(ours - expected).max() / np.abs(expected).max()) if ours.shape == expected.shape else float("inf")
                same = ours.shape == expected.shape and bool((ours.argmax(-1) == expected.argmax(-1)).all())
                ok = rel <= TOLERANCE and same
                failures += not ok
                print(f"{label}: {'ok' if ok else 'WRONG'} rel {rel:.2e}, top-1 {'same' if same else 'DIFFERENT'}"
                      + (f"; assumed: {'; '.join(assumed)}" if assumed else ""), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
