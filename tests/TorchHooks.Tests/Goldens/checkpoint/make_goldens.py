#!/usr/bin/python3
"""Golden files for TorchHooks' activation checkpointing, made with PyTorch (Debian's python3-torch 1.13.1).

Run from the repository root:  /usr/bin/python3 tests/TorchHooks.Tests/Goldens/checkpoint/make_goldens.py
Writes checkpoint.json beside this script. The C# tests (Checkpointing/CheckpointGoldenTests.cs) rebuild the
same models with the same weights (deterministic formula, no RNG), checkpoint the same modules with TorchHooks
and compare the output, the input gradient and every parameter gradient within 1e-10 (float64).

Each case runs torch.utils.checkpoint.checkpoint on the same modules, both use_reentrant=True and =False (the
script checks that the two agree with each other and with the un-checkpointed run, bit for bit), and records
the un-checkpointed values as well as the checkpointed ones.
"""
import json, os, sys
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden_values import init, data, flat  # noqa: E402  (shared with the other golden scripts)

torch.set_default_dtype(torch.float64)


class Block(nn.Module):          # a residual MLP block: x + fc2(tanh(fc1(x)))
    def __init__(self, d, h):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, d)

    def forward(self, x):
        return x + self.fc2(torch.tanh(self.fc1(x)))


class ResMlp(nn.Module):         # blocks.0 .. blocks.{n-1}, then head
    def __init__(self, n, d, h, ckpt=None):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, h) for _ in range(n)])
        self.head = nn.Linear(d, 2)
        self.ckpt = ckpt or (lambda name, f, *a: f(*a))

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            x = self.ckpt(f"blocks.{i}", b, x)
        return self.head(x)


class Pair(nn.Module):           # two inputs, tuple output: (a * b + lin(a), tanh(lin(b)))
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, a, b):
        return a * b + self.lin(a), torch.tanh(self.lin(b))


class Twice(nn.Module):          # one block called twice: blk(blk(x)) then head
    def __init__(self, ckpt=None):
        super().__init__()
        self.blk = Block(4, 6)
        self.head = nn.Linear(4, 1)
        self.ckpt = ckpt or (lambda name, f, *a: f(*a))

    def forward(self, x):
        h = self.ckpt("blk", self.blk, x)
        h = self.ckpt("blk", self.blk, h)
        return self.head(h)


def grads(model, x):
    out = {"params": {n: flat(p.grad) for n, p in model.named_parameters()}}
    if x is not None and x.requires_grad: out["x_grad"] = flat(x.grad)
    return out


def case_resmlp(x_requires_grad, selected):
    def run(ckpt):
        model = init(ResMlp(3, 4, 8, ckpt))
        x = data(5, 4)
        if x_requires_grad: x.requires_grad_()
        y = model(x)
        loss = (y * data(5, 2, phase=1.0)).sum()
        loss.backward()
        return {"output": flat(y), **grads(model, x)}
    plain = run(None)
    results = {}
    for reentrant in (False, True):
        ck = lambda name, f, *a: checkpoint(f, *a, use_reentrant=reentrant) if name in selected else f(*a)
        results[reentrant] = run(ck)
    # PyTorch's reentrant form gives no parameter gradients when no input requires grad ("None of the inputs
    # have requires_grad=True"); TorchHooks follows the non-reentrant form there.
    if x_requires_grad: assert results[True] == plain, "reentrant differs from the plain run"
    assert results[False] == plain, "non-reentrant differs from the plain run"
    return {"selected": sorted(selected), "plain": plain, "checkpointed": results[False],
            "reentrant_params_none": x_requires_grad is False and all(v is None for n, v in results[True]["params"].items() if n.startswith("blocks."))}


def case_pair():
    def run(ck):
        model = init(Pair())
        a = data(2, 3).requires_grad_()
        b = data(2, 3, phase=0.3)               # needs no grad
        y1, y2 = ck(model, a, b)                # y2 unused
        loss = (y1 * data(2, 3, phase=2.0)).sum()
        loss.backward()
        return {"output": flat(y1), "output2": flat(y2), "a_grad": flat(a.grad), **grads(model, None)}
    plain = run(lambda m, *a: m(*a))
    ck = run(lambda m, *a: checkpoint(m, *a, use_reentrant=False))
    assert ck == plain
    return {"plain": plain, "checkpointed": ck}


def case_twice():
    def run(ckpt):
        model = init(Twice(ckpt))
        x = data(3, 4).requires_grad_()
        y = model(x)
        y.sum().backward()
        return {"output": flat(y), **grads(model, x)}
    plain = run(None)
    ck = run(lambda name, f, *a: checkpoint(f, *a, use_reentrant=False))
    assert ck == plain
    return {"plain": plain, "checkpointed": ck}


cases = {
    "resmlp_all_blocks": case_resmlp(True, {"blocks.0", "blocks.1", "blocks.2"}),
    "resmlp_middle_block": case_resmlp(True, {"blocks.1"}),
    "resmlp_input_no_grad": case_resmlp(False, {"blocks.0", "blocks.1", "blocks.2"}),
    "pair_tuple_output": case_pair(),
    "block_called_twice": case_twice(),
}
out = {"torch": torch.__version__, "cases": cases}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path, "with", len(cases), "cases")
