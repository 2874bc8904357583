#!/usr/bin/python3
"""Golden files for TorchHooks' forward call path, made with PyTorch (Debian's python3-torch 1.13.1).

Run from the repository root:  /usr/bin/python3 tests/TorchHooks.Tests/Goldens/hooks/make_goldens.py
Writes hooks.json beside this script. The C# tests rebuild the same model with the same weights
(deterministic formula, no RNG) and compare hook order, replaced values and gradients.
PyTorch 1.13 has no prepend/always_call/with_kwargs: those cases are asserted from the upstream
test expectations in the C# tests instead.
"""
import json, math, os
import torch
import torch.nn as nn
from torch.nn.modules import module as module_mod


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.shared = nn.Linear(4, 4)
        self.dec = nn.Sequential(nn.Linear(4, 2))

    def forward(self, x):
        h = self.enc(x)
        h = self.shared(h)
        h = torch.tanh(self.shared(h))
        return self.dec(h)


def make_net():
    torch.set_default_dtype(torch.float64)
    net = Net()
    with torch.no_grad():
        for k, (_, p) in enumerate(net.named_parameters()):
            n = p.numel()
            p.copy_((torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + k) * 0.5).reshape(p.shape))
    return net


def make_input():
    return torch.cos(torch.arange(6, dtype=torch.float64) * 0.5).reshape(2, 3)


def names(net):
    return {m: n for n, m in net.named_modules()}


def tree_order():
    net = make_net(); nm = names(net); events = []; handles = []
    handles.append(module_mod.register_module_forward_pre_hook(lambda m, a: events.append("gpre:" + nm[m])))
    handles.append(module_mod.register_module_forward_hook(lambda m, a, o: events.append("gfwd:" + nm[m])))
    for n, m in net.named_modules():
        handles.append(m.register_forward_pre_hook(lambda mod, a, n=n: events.append("pre:" + n)))
        handles.append(m.register_forward_hook(lambda mod, a, o, n=n: events.append("fwd:" + n)))
    net(make_input())
    for h in handles: h.remove()
    return events


def replaced_values():
    net = make_net(); x = make_input().requires_grad_(True); handles = []
    # upstream test_global_and_local_hooks_order / test_forward_hooks-style replacement:
    handles.append(net.register_forward_pre_hook(lambda m, a: (a[0] * 2,)))            # root input doubled
    handles.append(net.dec[0].register_forward_hook(lambda m, a, o: -o))               # dec.0 output negated
    shared = net.shared
    handles.append(module_mod.register_module_forward_hook(lambda m, a, o: o + 1 if m is shared else None))
    y = net(x)
    y.sum().backward()
    for h in handles: h.remove()
    out = {"output": y.detach().flatten().tolist(), "input_grad": x.grad.flatten().tolist(), "param_grads": {}}
    for n, p in net.named_parameters():
        out["param_grads"][n] = p.grad.flatten().tolist()
    net.zero_grad()
    return out


def self_removing():
    net = make_net(); events = []; handles = {}
    def make(i):
        def hook(m, a):
            events.append(i)
            if i == 1:
                handles[0].remove(); handles[1].remove()
        return hook
    for i in range(3):
        handles[i] = net.register_forward_pre_hook(make(i))
    x = make_input()
    y1 = net(x); events.append("|"); y2 = net(x)
    handles[2].remove()
    return {"events": events, "same_output": bool(torch.equal(y1, y2)), "remaining": len(net._forward_pre_hooks)}


def main():
    golden = {
        "torch_version": torch.__version__,
        "input": make_input().flatten().tolist(),
        "plain_output": make_net()(make_input()).detach().flatten().tolist(),
        "tree_order": tree_order(),
        "replaced": replaced_values(),
        "self_removing": self_removing(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
