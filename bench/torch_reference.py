#!/usr/bin/env python3
"""The paper's model and training step in plain PyTorch: the baseline of `grok bench --all`.

The same network as src/model/config.ts (Power et al. 2022, as in openai/grok): a decoder-only transformer,
2 layers, width 128, 4 heads, FFN 4x with ReLU, post-LN blocks x = LN1(x + Attn(x)); x = LN2(x + FFN(x)),
no final LN, no biases, fixed sinusoidal positions, untied head on the last position ("="), trained with
AdamW (lr 1e-3, betas (0.9, 0.98), eps 1e-8, weight decay 1, 10 warmup steps) on x/y mod 97, 50% of the table.

  torch_reference.py time --batch-size 512|full --threads 1 --steps 20|auto [--seconds 8] --warmup 2
      ms per training step (forward, backward, AdamW step, zero_grad): one JSON line.
  torch_reference.py parity --weights W.safetensors --batch B.json
      loss and gradients for weights saved by the workbench ([in, out] layout and its names): one JSON line.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

P = 97
VOCAB = P + 2  # the symbols, then the operation token, then "="
OP_TOKEN, EQ_TOKEN = P, P + 1
SEQ_LEN = 4
WIDTH, LAYERS, HEADS, FFN = 128, 2, 4, 512


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("time", help="ms per training step")
    t.add_argument("--batch-size", default="512", help="an integer or 'full' (the whole training set, 4,656)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--steps", default="10", help="timed steps, or 'auto': about --seconds of steps (at least 3, 2 if slow)")
    t.add_argument("--seconds", type=float, default=8.0, help="time budget of --steps auto")
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("parity", help="loss and gradients of the workbench's weights on one batch")
    p.add_argument("--weights", required=True, help="a safetensors file written by the workbench")
    p.add_argument("--batch", required=True, help='JSON {"inputs": [[x, op, y, eq], ...], "targets": [...]}')
    p.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before torch (and the BLAS it loads) starts its thread pools; OpenBLAS and
# OpenMP read these variables, torch.set_num_threads covers the rest. With OpenBLAS's pthreads build, idle
# OpenMP threads spinning (the default ACTIVE policy) steal the cores from OpenBLAS's threads: measured
# 257 vs 163 ms per step at batch 512 on 2 threads, no change on 1 thread.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ---------------------------------------------------------------------------------------------- the model


def sinusoidal_positions(seq_len, width):
    """openai/grok's table: sin(pos/10000^(i/d)) at even i, cos(pos/10000^((i-1)/d)) at odd i."""
    pe = np.zeros((seq_len, width), dtype=np.float64)
    for pos in range(seq_len):
        for i in range(width):
            angle = pos / 10000 ** ((i - i % 2) / width)
            pe[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return torch.tensor(pe, dtype=torch.float32)


class SelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.wo = nn.Linear(width, width, bias=False)

    def forward(self, x, mask):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.wo((att @ v).transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.w1 = nn.Linear(width, hidden, bias=False)
        self.w2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x):
        return self.w2(F.relu(self.w1(x)))


class Block(nn.Module):
    def __init__(self, width, heads, hidden):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln1 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, hidden)
        self.ln2 = nn.LayerNorm(width)

    def forward(self, x, mask):
        x = self.ln1(x + self.attn(x, mask))
        return self.ln2(x + self.mlp(x))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.register_buffer("pos", sinusoidal_positions(SEQ_LEN, WIDTH))
        self.register_buffer("mask", torch.tril(torch.ones(SEQ_LEN, SEQ_LEN, dtype=torch.bool)))
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS, FFN) for _ in range(LAYERS))
        self.head = nn.Linear(WIDTH, P, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos
        for block in self.blocks:
            x = block(x, self.mask)
        return self.head(x[:, -1])  # the answer is read at "="


def loss_fn(model, inputs, targets):
    return F.cross_entropy(model(inputs), targets)


# ------------------------------------------------------------------------------ the workbench's weights

# Workbench name -> (module parameter, transposed?). Linear weights are stored [in, out] by the workbench,
# [out, in] by nn.Linear; embeddings and LayerNorm vectors have the same layout in both.
def name_map(model):
    params = dict(model.named_parameters())
    out = {"embed.token": (params["embed.weight"], False), "head.weight": (params["head.weight"], True)}
    for l in range(LAYERS):
        for w in ("wq", "wk", "wv", "wo"):
            out[f"blocks.{l}.attn.{w}"] = (params[f"blocks.{l}.attn.{w}.weight"], True)
        for w in ("w1", "w2"):
            out[f"blocks.{l}.mlp.{w}"] = (params[f"blocks.{l}.mlp.{w}.weight"], True)
        for ln in ("ln1", "ln2"):
            for w in ("weight", "bias"):
                out[f"blocks.{l}.{ln}.{w}"] = (params[f"blocks.{l}.{ln}.{w}"], False)
    return out


def read_safetensors(path):
    """A minimal reader: u64 LE header length, JSON header {name: {dtype, shape, data_offsets}}, raw data."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}; only F32 is supported")
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"]).copy()
    return tensors


def load_weights(model, tensors):
    with torch.no_grad():
        for name, (param, transposed) in name_map(model).items():
            value = torch.from_numpy(tensors[name])
            param.copy_(value.t() if transposed else value)


# ------------------------------------------------------------------------------------------ the commands


def blas_library():
    """The BLAS this process loaded (Debian's torch calls whatever libblas.so.3 points to)."""
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "blas" in line.lower()}
    except OSError:
        return "unknown"
    real = sorted({os.path.realpath(lib) for lib in libs})
    if any("openblas" in lib for lib in real):
        return "OpenBLAS"
    if any("mkl" in lib for lib in real):
        return "MKL"
    if any("/blas/libblas" in lib for lib in real):
        return "reference BLAS (netlib)"
    return ", ".join(os.path.basename(lib) for lib in real) or "none found"


def division_training_set(seed):
    """x/y mod 97 (y != 0): 9,312 equations, a random half for training."""
    inv = {y: pow(y, P - 2, P) for y in range(1, P)}
    rows = [(x, y, x * inv[y] % P) for x in range(P) for y in range(1, P)]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(rows), generator=g)[: round(len(rows) * 0.5)]
    data = torch.tensor(rows)[pick]
    n = len(data)
    inputs = torch.stack([data[:, 0], torch.full((n,), OP_TOKEN), data[:, 1], torch.full((n,), EQ_TOKEN)], dim=1)
    return inputs, data[:, 2]


def time_command(args):
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # only allowed before any inter-op work
    torch.manual_seed(args.seed)
    inputs, targets = division_training_set(args.seed)
    n = len(targets)
    batch_size = n if args.batch_size == "full" else min(int(args.batch_size), n)

    model = Transformer()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 10))

    def batches():  # epochs of a fresh permutation, the last batch of each possibly smaller (no drop_last)
        while True:
            order = torch.randperm(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield inputs[idx], targets[idx]

    def train_step(batch):
        loss = loss_fn(model, *batch)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def another(times):  # --steps N steps, or about --seconds of them: at least 3, or 2 if one takes half of it
        if args.steps != "auto":
            return len(times) < int(args.steps)
        budget = args.seconds * 1e3
        min_steps = 2 if times and times[0] > budget / 2 else 3
        return len(times) < min_steps or (sum(times) < budget and len(times) < 10000)

    stream = batches()
    warmup = args.warmup
    if args.steps == "auto":  # 1 or 2 warmup steps: a first step over half the budget is warmup enough
        warmup = max(1, min(2, warmup))
    for i in range(warmup):
        t0 = time.perf_counter()
        train_step(next(stream))
        if args.steps == "auto" and time.perf_counter() - t0 > args.seconds / 2:
            break
    times = []
    while another(times):
        batch = next(stream)
        t0 = time.perf_counter()
        train_step(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    steps = len(times)
    result = {
        "msPerStep": {"mean": statistics.fmean(times), "median": statistics.median(times), "min": min(times)},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": blas_library(),
        "batchSize": batch_size,
        "steps": steps,
    }
    print(json.dumps(result))


def parity_command(args):
    torch.set_num_threads(args.threads)
    model = Transformer()
    names = name_map(model)
    load_weights(model, read_safetensors(args.weights))
    with open(args.batch) as f:
        batch = json.load(f)
    inputs = torch.tensor(batch["inputs"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    loss = loss_fn(model, inputs, targets)
    loss.backward()
    grads = {}
    for name, (param, transposed) in names.items():
        g = param.grad.t() if transposed else param.grad
        grads[name] = g.contiguous().reshape(-1).tolist()
    print(json.dumps({"loss": loss.item(), "grads": grads, "torch": torch.__version__}))


if __name__ == "__main__":
    (time_command if ARGS.command == "time" else parity_command)(ARGS)
    sys.stdout.flush()
