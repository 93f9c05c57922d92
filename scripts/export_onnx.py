"""The app's Lite0 as two ONNX files, for ONNX Runtime Web's bench page (bench/ort.html):

  lite0-logits.onnx    the whole network: the 1000 ImageNet logits (inference)
  lite0-features.onnx  the network up to the pooled 1280 features: what a head run computes
                       once over its photos (the frozen pass)

Both from the app's own PyTorch code (`finetune pytorch`) with the ImageNet checkpoint, exported
as scripts/side_by_side.py exports its ONNX Runtime peer (input `x`, any batch, 224x224).

Usage (scripts/browser-side-by-side.sh runs it):
  python scripts/export_onnx.py FINETUNE_BINARY OUT_DIR
"""

import argparse
import os
import sys
import tempfile

import torch

from side_by_side import export_onnx, lesson_module


class PooledFeatures(torch.nn.Module):
    """The network without its classifier: stem, blocks, conv head and pooling."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.run(x, 0, -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("finetune", help="a finetune binary (it writes the PyTorch code)")
    parser.add_argument("out", help="folder for the two .onnx files")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x = torch.randn(1, 3, 224, 224)
    with tempfile.TemporaryDirectory() as workdir:
        lesson = lesson_module(args.finetune, workdir)
        model = lesson.pretrained(None).eval()
        export_onnx(model, x, os.path.join(args.out, "lite0-logits.onnx"))
        export_onnx(PooledFeatures(model).eval(), x, os.path.join(args.out, "lite0-features.onnx"),
                    output="features")
        with torch.no_grad():
            print(f"logits {tuple(model(x).shape)}, features {tuple(PooledFeatures(model)(x).shape)}"
                  f" -> {args.out}")


if __name__ == "__main__":
    sys.exit(main())
