#!/usr/bin/python3
"""Golden file for TorchHooks' call-path hooks (ModelHook), made with PyTorch (Debian's python3-torch 1.13.1).

Run from the repository root:  /usr/bin/python3 tests/TorchHooks.Tests/Goldens/model_hooks/make_goldens.py
Writes model_hooks.json beside this script.

Accelerate is not a dependency: `add_hook_to_module` below follows accelerate/hooks.py (ModelHook,
SequentialHook, add_hook_to_module with append=True): it replaces `module.forward` with a `new_forward` that
runs `hook.pre_forward`, the old forward, then `hook.post_forward` -- so the hooks run *inside* forward, after
PyTorch's forward pre-hooks and the backward hooks' input wrap, before forward hooks. The C# test rebuilds the
same model with the same weights and compares the event order, the values each hook saw, and the gradients a
full backward hook saw.
"""
import functools, json, os
import torch
import torch.nn as nn


class ModelHook:
    no_grad = False

    def init_hook(self, module):
        return module

    def pre_forward(self, module, *args, **kwargs):
        return args, kwargs

    def post_forward(self, module, output):
        return output

    def detach_hook(self, module):
        return module


class SequentialHook(ModelHook):
    def __init__(self, *hooks):
        self.hooks = hooks

    def init_hook(self, module):
        for hook in self.hooks:
            module = hook.init_hook(module)
        return module

    def pre_forward(self, module, *args, **kwargs):
        for hook in self.hooks:
            args, kwargs = hook.pre_forward(module, *args, **kwargs)
        return args, kwargs

    def post_forward(self, module, output):
        for hook in self.hooks:
            output = hook.post_forward(module, output)
        return output


def add_hook_to_module(module, hook, append=False):
    if append and getattr(module, "_hf_hook", None) is not None:
        old_hook = module._hf_hook
        hook = SequentialHook(old_hook, hook)
    if hasattr(module, "_hf_hook") and hasattr(module, "_old_forward"):
        old_forward = module._old_forward
    else:
        old_forward = module.forward
        module._old_forward = old_forward
    module = hook.init_hook(module)
    module._hf_hook = hook

    def new_forward(module, *args, **kwargs):
        args, kwargs = module._hf_hook.pre_forward(module, *args, **kwargs)
        if module._hf_hook.no_grad:
            with torch.no_grad():
                output = module._old_forward(*args, **kwargs)
        else:
            output = module._old_forward(*args, **kwargs)
        return module._hf_hook.post_forward(module, output)

    module.forward = functools.update_wrapper(functools.partial(new_forward, module), old_forward)
    return module


def make_net():
    torch.set_default_dtype(torch.float64)
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with torch.no_grad():  # the weights of the other goldens: sin(0.37 i + k) / 2 for the k-th parameter
        for k, p in enumerate(net.parameters()):
            p.copy_((torch.sin(torch.arange(p.numel(), dtype=torch.float64) * 0.37 + k) * 0.5).reshape(p.shape))
    return net


def make_input():
    return (torch.arange(6, dtype=torch.float64).reshape(2, 3) * 0.1 - 0.2).requires_grad_(True)


def main():
    events = []
    seen = {}

    class Recorder(ModelHook):
        def __init__(self, name, scale, shift):
            self.name, self.scale, self.shift = name, scale, shift

        def pre_forward(self, module, x):
            events.append(f"{self.name}.pre_forward")
            seen[f"{self.name}.pre_forward.input"] = x.sum().item()
            return (x * self.scale,), {}

        def post_forward(self, module, y):
            events.append(f"{self.name}.post_forward")
            seen[f"{self.name}.post_forward.output"] = y.sum().item()
            return y + self.shift

    net = make_net()
    first = net[0]

    def pre_hook(m, args):
        events.append("0.forward_pre_hook")
        return (args[0] + 1,)

    def fwd_hook(m, args, y):
        events.append("0.forward_hook")
        seen["0.forward_hook.input"] = args[0].sum().item()
        seen["0.forward_hook.output"] = y.sum().item()
        return None

    def bwd_hook(m, grad_input, grad_output):
        events.append("0.full_backward_hook")
        seen["0.full_backward_hook.grad_input"] = grad_input[0].sum().item()
        seen["0.full_backward_hook.grad_output"] = grad_output[0].sum().item()
        return None

    def root_pre(m, args):
        events.append("root.forward_pre_hook")

    def root_fwd(m, args, y):
        events.append("root.forward_hook")

    first.register_forward_pre_hook(pre_hook)
    first.register_forward_hook(fwd_hook)
    first.register_full_backward_hook(bwd_hook)
    add_hook_to_module(first, Recorder("A", 2.0, 0.25))
    add_hook_to_module(first, Recorder("B", -0.5, 1.0), append=True)
    net.register_forward_pre_hook(root_pre)
    net.register_forward_hook(root_fwd)
    add_hook_to_module(net, Recorder("R", 1.0, 0.5))

    x = make_input()
    y = net(x)
    events.append("backward")
    y.sum().backward()

    golden = {
        "events": events,
        "seen": seen,
        "output_sum": y.sum().item(),
        "input_grad_sum": x.grad.sum().item(),
        "weight0_grad_sum": first.weight.grad.sum().item(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_hooks.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
