"""Goldens for TorchHooks' autocast: output dtypes of ops under torch.autocast("cpu", dtype=torch.bfloat16),
and with enabled=False, plus the values of one linear layer under autocast.

Run: /usr/bin/python3 tests/TorchHooks.Tests/Goldens/autocast/make_goldens.py
Writes autocast_dtypes.json next to this script. The C# test (AutocastGoldenTests) builds the same inputs by
name ("f32" = float32, "bf16" = bfloat16, "f64" = float64, "i64" = int64) and runs the same op.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)


def t(kind, *shape):
    n = 1
    for s in shape:
        n *= s
    # Deterministic values in (-1, 1): sin of a ramp, the same formula as the C# side (values don't matter for dtypes).
    base = torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + 0.1).reshape(shape)
    if kind == "f32":
        return base.float()
    if kind == "bf16":
        return base.to(torch.bfloat16)
    if kind == "f64":
        return base
    if kind == "i64":
        return (base * 10).long()
    raise ValueError(kind)


def pos(x):
    """Strictly positive version (for log, pow, poisson, bce targets)."""
    return x.abs() + 0.5


def prob(x):
    return torch.sigmoid(x.float()).to(x.dtype)


# name -> (input kind, function of kind); each op gets its inputs from t(kind, ...).
CASES = {
    # lower-precision (CPU autocast casts to bf16)
    "linear": ("f32", lambda k: F.linear(t(k, 4, 3), t(k, 5, 3), t(k, 5))),
    "matmul": ("f32", lambda k: torch.matmul(t(k, 4, 3), t(k, 3, 5))),
    "mm": ("f32", lambda k: torch.mm(t(k, 4, 3), t(k, 3, 5))),
    "bmm": ("f32", lambda k: torch.bmm(t(k, 2, 4, 3), t(k, 2, 3, 5))),
    "addmm": ("f32", lambda k: torch.addmm(t(k, 4, 5), t(k, 4, 3), t(k, 3, 5))),
    "addbmm": ("f32", lambda k: torch.addbmm(t(k, 4, 5), t(k, 2, 4, 3), t(k, 2, 3, 5))),
    "baddbmm": ("f32", lambda k: torch.baddbmm(t(k, 2, 4, 5), t(k, 2, 4, 3), t(k, 2, 3, 5))),
    "conv1d": ("f32", lambda k: F.conv1d(t(k, 1, 2, 8), t(k, 3, 2, 3), t(k, 3))),
    "conv2d": ("f32", lambda k: F.conv2d(t(k, 1, 2, 6, 6), t(k, 3, 2, 3, 3), t(k, 3))),
    "conv3d": ("f32", lambda k: F.conv3d(t(k, 1, 2, 4, 4, 4), t(k, 3, 2, 2, 2, 2))),
    "conv_transpose1d": ("f32", lambda k: F.conv_transpose1d(t(k, 1, 2, 8), t(k, 2, 3, 3))),
    "conv_transpose2d": ("f32", lambda k: F.conv_transpose2d(t(k, 1, 2, 5, 5), t(k, 2, 3, 3, 3))),
    "prelu": ("f32", lambda k: F.prelu(t(k, 2, 3, 4), t(k, 3))),
    # float32 list (CPU autocast upcasts bf16 inputs to float32)
    "mse_loss": ("bf16", lambda k: F.mse_loss(t(k, 4, 3), t(k, 4, 3) * 0.5)),
    "l1_loss": ("bf16", lambda k: F.l1_loss(t(k, 4, 3), t(k, 4, 3) * 0.5)),
    "smooth_l1_loss": ("bf16", lambda k: F.smooth_l1_loss(t(k, 4, 3), t(k, 4, 3) * 0.5)),
    "huber_loss": ("bf16", lambda k: F.huber_loss(t(k, 4, 3), t(k, 4, 3) * 0.5)),
    "binary_cross_entropy_with_logits": ("bf16", lambda k: F.binary_cross_entropy_with_logits(t(k, 4, 3), prob(t(k, 4, 3)))),
    "binary_cross_entropy": ("bf16", lambda k: F.binary_cross_entropy(prob(t(k, 4, 3)), prob(t(k, 4, 3) * 0.5))),
    "nll_loss": ("bf16", lambda k: F.nll_loss(F.log_softmax(t(k, 4, 3).float(), 1).to(t(k, 1).dtype), torch.tensor([0, 2, 1, 0]))),
    "cross_entropy": ("bf16", lambda k: F.cross_entropy(t(k, 4, 3), torch.tensor([0, 2, 1, 0]))),
    "kl_div": ("bf16", lambda k: F.kl_div(t(k, 4, 3), prob(t(k, 4, 3)), reduction="batchmean")),
    "soft_margin_loss": ("bf16", lambda k: F.soft_margin_loss(t(k, 4, 3), torch.sign(t(k, 4, 3)))),
    "margin_ranking_loss": ("bf16", lambda k: F.margin_ranking_loss(t(k, 4), t(k, 4) * 0.5, torch.sign(t(k, 4)))),
    "poisson_nll_loss": ("bf16", lambda k: F.poisson_nll_loss(t(k, 4, 3), pos(t(k, 4, 3)))),
    "prod": ("bf16", lambda k: torch.prod(t(k, 4, 3))),
    "cdist": ("bf16", lambda k: torch.cdist(t(k, 4, 3), t(k, 5, 3))),
    "trace": ("bf16", lambda k: torch.trace(t(k, 4, 4))),
    "avg_pool3d": ("bf16", lambda k: F.avg_pool3d(t(k, 1, 2, 4, 4, 4), 2)),
    "max_pool3d": ("bf16", lambda k: F.max_pool3d(t(k, 1, 2, 4, 4, 4), 2)),
    "adaptive_avg_pool3d": ("bf16", lambda k: F.adaptive_avg_pool3d(t(k, 1, 2, 4, 4, 4), 2)),
    "reflection_pad1d": ("bf16", lambda k: F.pad(t(k, 1, 2, 6), (2, 2), mode="reflect")),
    "replication_pad2d": ("bf16", lambda k: F.pad(t(k, 1, 2, 4, 4), (1, 1, 1, 1), mode="replicate")),
    # ops in no CPU list: run in the type of their inputs
    "softmax": ("bf16", lambda k: torch.softmax(t(k, 4, 3), 1)),
    "log_softmax": ("bf16", lambda k: torch.log_softmax(t(k, 4, 3), 1)),
    "layer_norm": ("bf16", lambda k: F.layer_norm(t(k, 4, 3), [3])),
    "group_norm": ("bf16", lambda k: F.group_norm(t(k, 2, 4, 3), 2)),
    "exp": ("bf16", lambda k: torch.exp(t(k, 4, 3))),
    "log": ("bf16", lambda k: torch.log(pos(t(k, 4, 3)))),
    "pow": ("bf16", lambda k: torch.pow(pos(t(k, 4, 3)), 2.5)),
    "sum": ("bf16", lambda k: torch.sum(t(k, 4, 3))),
    "mean": ("bf16", lambda k: torch.mean(t(k, 4, 3))),
    "cumsum": ("bf16", lambda k: torch.cumsum(t(k, 4, 3), 1)),
    "relu": ("bf16", lambda k: torch.relu(t(k, 4, 3))),
    "gelu": ("bf16", lambda k: F.gelu(t(k, 4, 3))),
    "sigmoid": ("bf16", lambda k: torch.sigmoid(t(k, 4, 3))),
    "tanh": ("bf16", lambda k: torch.tanh(t(k, 4, 3))),
    "add": ("f32", lambda k: t(k, 4, 3) + t(k, 4, 3)),
    "mul": ("f32", lambda k: t(k, 4, 3) * t(k, 4, 3)),
    "softmax_f32": ("f32", lambda k: torch.softmax(t(k, 4, 3), 1)),
    "sum_f32": ("f32", lambda k: torch.sum(t(k, 4, 3))),
    # promote list: mixed bf16/f32 inputs go to the widest type
    "cat_mixed": ("mixed", lambda k: torch.cat([t("bf16", 2, 3), t("f32", 2, 3)])),
    "stack_mixed": ("mixed", lambda k: torch.stack([t("bf16", 2, 3), t("f32", 2, 3)])),
    "index_copy_mixed": ("mixed", lambda k: torch.index_copy(t("bf16", 4, 3), 0, torch.tensor([0, 2]), t("f32", 2, 3))),
    "add_mixed": ("mixed", lambda k: t("bf16", 4, 3) + t("f32", 4, 3)),
    # not eligible: float64 and integer inputs
    "linear_f64": ("f64", lambda k: F.linear(t(k, 4, 3), t(k, 5, 3))),
    "matmul_i64": ("i64", lambda k: torch.matmul(t(k, 4, 3), t(k, 3, 5))),
}


def run(name, enabled):
    kind, fn = CASES[name]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = fn(kind if kind != "mixed" else "f32")
        return str(out.dtype).replace("torch.", "")
    except Exception as e:  # an op without a kernel for the type in this PyTorch
        return "error: " + type(e).__name__


cases = []
for name in CASES:
    cases.append({
        "op": name,
        "inputs": CASES[name][0],
        "autocast": run(name, True),
        "disabled": run(name, False),
    })

# Values: F.linear under autocast, relu after it (a bf16 intermediate), and float32 reference.
x = t("f32", 8, 16)
w = t("f32", 6, 16) * 0.3
b = t("f32", 6)
with torch.autocast("cpu", dtype=torch.bfloat16):
    y_ac = torch.relu(F.linear(x, w, b))
y_32 = torch.relu(F.linear(x, w, b))

golden = {
    "torch_version": torch.__version__,
    "device_type": "cpu",
    "dtype": "bfloat16",
    "note": "inputs: f32/bf16/f64/i64 = every input of that type; mixed = the first bf16, the rest f32",
    "cases": cases,
    "linear_relu": {
        "x_shape": [8, 16], "w_shape": [6, 16], "w_factor": 0.3, "b_shape": [6],
        "autocast_dtype": str(y_ac.dtype).replace("torch.", ""),
        "autocast": y_ac.float().flatten().tolist(),
        "float32": y_32.flatten().tolist(),
    },
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "autocast_dtypes.json")
with open(path, "w") as f:
    json.dump(golden, f, indent=1)
    f.write("\n")
print("wrote", path, len(cases), "cases")
for c in cases:
    print(f"{c['op']:35s} {c['inputs']:5s} autocast={c['autocast']:10s} disabled={c['disabled']}")
