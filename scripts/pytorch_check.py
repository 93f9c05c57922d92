"""Checks that PyTorch reads a model exported by Finetune Studio and predicts what the app does.

Loads MODEL.safetensors into ../shared/reference/effnet_lite_reference.py's EfficientNetLite
of the backbone its metadata names (lite0, lite1 or lite2) with the file's class count (strict:
every key and shape must match), runs the reference preprocessing (PIL bilinear resize of the
shorter side to input + 32, centre crop input: 224, 240 or 260; (x - 127) / 128), and compares the softmax with `finetune predict --model MODEL --json` on the
same photos. Needs torch and Pillow (not installed by the project: see the README).

    python3 scripts/pytorch_check.py MODEL.safetensors PHOTO...
"""
import json
import os
import struct
import subprocess
import sys

import torch
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "reference"))
from effnet_lite_reference import VARIANTS, EfficientNetLite  # noqa: E402

DTYPES = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64}
TOLERANCE = 0.01  # probabilities; the two resizers differ by ~0.2/255 per pixel


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]) if info["shape"] else t.reshape(())
    return tensors, meta


def preprocess(path, crop):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = img.size
    # torchvision's Resize(crop + 32): the shorter side to it, the longer truncated.
    short = crop + 32
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = round((w - crop) / 2), round((h - crop) / 2)
    img = img.crop((left, top, left + crop, top + crop))
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(crop, crop, 3)
    return (x.permute(2, 0, 1).float() - 127.0) / 128.0


def main():
    model_path, photos = sys.argv[1], sys.argv[2:]
    tensors, meta = read_safetensors(model_path)
    classes = json.loads(meta["classes"])
    variant = meta.get("backbone", "efficientnet-lite0").removeprefix("efficientnet-")
    crop = VARIANTS[variant][2]
    model = EfficientNetLite(variant, num_classes=len(classes))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        probs = model(torch.stack([preprocess(p, crop) for p in photos])).softmax(1)

    cmd = ["cargo", "run", "-q", "--bin", "finetune", "--", "predict", "--backend", "cpu",
           "--model", model_path, "--top", str(len(classes)), "--json", *photos]
    ours = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    worst = 0.0
    for photo, p, result in zip(photos, probs, ours["results"]):
        theirs = {c["label"]: c["prob"] for c in result["top"]}
        torch_top = classes[int(p.argmax())]
        diff = max(abs(float(p[i]) - theirs[c]) for i, c in enumerate(classes))
        worst = max(worst, diff)
        ok = torch_top == result["top"][0]["label"] and diff <= TOLERANCE
        print(f"{os.path.basename(photo)}: PyTorch {torch_top} {float(p.max()):.4f}, "
              f"finetune {result['top'][0]['label']} {result['top'][0]['prob']:.4f}, "
              f"max prob diff {diff:.5f} {'ok' if ok else 'MISMATCH'}")
        if not ok:
            sys.exit(1)
    print(f"{len(photos)} photos, {len(classes)} classes {classes}: same top-1, max prob diff {worst:.5f}")


if __name__ == "__main__":
    main()
