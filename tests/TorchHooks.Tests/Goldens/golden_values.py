"""Deterministic weights and data shared by the golden scripts (backward/, checkpoint/), float64, no RNG.

The C# tests rebuild the same values with BackwardGoldenTests.Init and BackwardGoldenTests.Data.
"""
import torch


def init(module):
    """Parameter k (in named_parameters() order) gets sin(arange(n) * 0.37 + k) * 0.5."""
    with torch.no_grad():
        for k, (_, p) in enumerate(module.named_parameters()):
            n = p.numel()
            p.copy_((torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + k) * 0.5).reshape(p.shape))
    return module


def data(*shape, phase=0.0):
    n = 1
    for s in shape: n *= s
    return torch.cos(torch.arange(n, dtype=torch.float64) * 0.5 + phase).reshape(*shape)


def flat(t):
    return None if t is None else [float(v) for v in t.detach().reshape(-1)]
