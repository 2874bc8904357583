#!/usr/bin/python3
"""Golden files for TorchHooks' backward hooks, made with PyTorch (Debian's python3-torch 1.13.1).

Run from the repository root:  /usr/bin/python3 tests/TorchHooks.Tests/Goldens/backward/make_goldens.py
Writes backward.json beside this script. The C# tests (Backward/BackwardGoldenTests.cs) rebuild the same
models with the same weights (deterministic formula, no RNG) and compare, within 1e-6, what every full
backward hook saw (grad_input, grad_output, None entries), the order the hooks fired in, and the weight and
input gradients.

PyTorch 1.13 has full backward hooks but no backward pre-hooks (added in 2.0). Where a case needs a pre-hook
that replaces grad_output, this script uses what the pre-hook is defined to be equivalent to: a gradient hook
on the module's output tensor (registered from a forward hook), which replaces the gradient before it enters
the module (its own full hooks are recorded as seeing the replaced grad_output, the documented pre-hook rule).
The C# side uses a real backward pre-hook.
"""
import json, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden_values import init, data, flat  # noqa: E402  (shared with the other golden scripts)

torch.set_default_dtype(torch.float64)


def mlp():
    return init(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        h = self.conv2(h)
        return self.fc(h.flatten(1))


class Mul(nn.Module):      # two inputs
    def forward(self, a, b):
        return a * b + a


class Split(nn.Module):    # tuple output
    def forward(self, x):
        return x * 2, x * 3


def run(model, inputs, loss_fn, full=(), pre=()):
    """full: {name: action}; pre: {name: action}; action in observe|scale2|zero|half.
    Records every full hook firing (all modules get an observing one) and the gradients."""
    names = {m: n for n, m in model.named_modules()}
    events = []
    handles = []

    def act(action, grads):
        if action == "scale2": return tuple(None if g is None else g * 2 for g in grads)
        if action == "zero": return tuple(None if g is None else g * 0 for g in grads)
        if action == "half": return tuple(None if g is None else g * 0.5 for g in grads)
        return None

    for n, m in model.named_modules():
        if isinstance(m, nn.Sequential) and n != "":
            continue
        def hook(mod, gi, go, n=n):
            # A backward pre-hook's replacement is what the module's full hooks see (PyTorch >= 2.0 rule);
            # the emulating tensor hook sits inside the module's output node, so apply it here for the record.
            if n in dict(pre): go = act(dict(pre)[n], go)
            events.append({"module": n, "grad_input": [flat(g) for g in gi], "grad_output": [flat(g) for g in go]})
            return act(dict(full).get(n, "observe"), gi)
        handles.append(m.register_full_backward_hook(hook))
    for n, action in dict(pre).items():
        m = dict(model.named_modules())[n]
        def fwd(mod, args, out, action=action):
            out.register_hook(lambda g: act(action, (g,))[0])
        handles.append(m.register_forward_hook(fwd))
    out = model(*inputs)
    loss = loss_fn(out)
    loss.backward()
    for h in handles: h.remove()
    return {
        "events": events,
        "params": {n: flat(p.grad) for n, p in model.named_parameters()},
        "inputs": [flat(x.grad) for x in inputs],
        "loss": float(loss),
    }


def cases():
    out = {}
    sq = lambda y: (y * y).sum()
    x = lambda: data(2, 4).requires_grad_()
    out["mlp_observe"] = run(mlp(), [x()], sq)
    out["mlp_scale_input_grad"] = run(mlp(), [x()], sq, full={"0": "scale2"})
    out["mlp_zero_grad_input"] = run(mlp(), [x()], sq, full={"2": "zero"})
    out["mlp_pre_half"] = run(mlp(), [x()], sq, pre={"2": "half"})
    out["mlp_pre_zero"] = run(mlp(), [x()], sq, pre={"1": "zero"})
    img = lambda: data(2, 1, 6, 6, phase=0.3).requires_grad_()
    out["conv_observe"] = run(init(ConvNet()), [img()], sq)
    out["conv_scale"] = run(init(ConvNet()), [img()], sq, full={"conv2": "scale2"}, pre={"fc": "half"})
    a = lambda: data(3, 2).requires_grad_()
    b = lambda: data(3, 2, phase=1.0).requires_grad_()
    out["multi_input"] = run(Mul(), [a(), b()], sq)
    out["multi_input_scale"] = run(Mul(), [a(), b()], sq, full={"": "scale2"})
    out["multi_input_b_no_grad"] = run(Mul(), [a(), data(3, 2, phase=1.0)], sq)
    out["tuple_output"] = run(Split(), [data(3).requires_grad_()], lambda y: (y[0] * y[1]).sum())
    out["unused_output"] = run(Split(), [data(3).requires_grad_()], lambda y: (y[0] * y[0]).sum())
    out["no_input_requires_grad"] = run(init(nn.Linear(4, 2)), [data(2, 4)], sq)
    return out


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backward.json")
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases()}, f, indent=1)
    print("wrote", path)
