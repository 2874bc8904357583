#!/usr/bin/python3
"""PyTorch's own per-hook cost, for comparison with TorchHooks (docs/benchmarks.md, suite 3).

Same model and method as HookCostBenchmarks: Sequential(Linear(8,8), ReLU) x4 (9 module calls per forward)
on a 1x8 input, parameters not requiring grad, one intra-op thread. For each hook kind, no-op hooks are
registered 1 or 8 per module (local) or 1 or 8 globally; per-hook cost = (t8 - t1) / (7 * 9).

Cases are interleaved round by round (the machine may be shared), and each case's median is reported.

Backward section: forward + backward of the same model with parameters requiring grad, without and with one
no-op full backward hook on every module (9 firings per step); per module call = (with - without) / 9.
Same as BackwardHookBenchmarks (suite 6).

Also, for docs/tracing.md (TorchHooks' tracer vs torch.profiler on the same model, suite 5): the cost per module
call of running the forward inside torch.profiler.profile(activities=[CPU]) with module events
(with_stack=True: "nn.Module: Linear_0" scopes) and with ops only, each round's profile context timing
PROFILE_NUMBER forwards; per module call = (profiled - plain) / 9.

--serve-profiler: the same profiler cases, one round per line "round" read on stdin, each answered with one line
"ROUND {...}" (ns per forward: plain, profiler with_stack, profiler ops only); first a line "READY {...}". The C#
tracing suite (benchmarks/TorchHooks.Benchmarks/TracingPaired.cs) runs it as a child process and alternates its
own rounds with these, so TorchHooks' tracer and torch.profiler are measured in one run, under the same load.

--serve-backward: likewise for the backward cases (no hooks, a full backward hook, a backward pre-hook, a
gradient hook per module; forward and backward timed separately), for the C# backward suite (BackwardPaired.cs).

Run: /usr/bin/python3 benchmarks/pytorch_hook_cost.py   (--profiler-only: only the profiler cases)
Prints a readable table, then one line "JSON {...}" that the benchmark program parses.
"""
import sys
import json
import platform
import statistics
import time
import timeit

import torch
import torch.nn.modules.module as module_mod

CALLS = 9          # module calls per forward
NUMBER = 200       # forwards per timing sample
ROUNDS = 40        # samples per case; cases are interleaved round by round, the median is reported
KINDS = ("local pre", "local forward", "global pre", "global forward")
PROFILE_NUMBER = 200
PROFILE_ROUNDS = 15


def make_model():
    torch.manual_seed(1)
    layers = []
    for _ in range(4):
        layers += [torch.nn.Linear(8, 8), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def pre(m, args):
    return None


def post(m, args, out):
    return None


def register(model, kind, count):
    handles = []
    for _ in range(count):
        if kind == "local pre":
            handles += [m.register_forward_pre_hook(pre) for m in model.modules()]
        elif kind == "local forward":
            handles += [m.register_forward_hook(post) for m in model.modules()]
        elif kind == "global pre":
            handles.append(module_mod.register_module_forward_pre_hook(pre))
        elif kind == "global forward":
            handles.append(module_mod.register_module_forward_hook(post))
    return handles


def profiler_cost(model, x):
    """ns per forward: plain, under torch.profiler with module scopes (with_stack=True), with ops only."""
    from torch.profiler import profile, ProfilerActivity
    call = lambda: model(x)
    samples = {"plain": [], "profiler with_stack": [], "profiler ops only": []}
    with torch.no_grad():
        for _ in range(300):
            call()
        for _ in range(PROFILE_ROUNDS):
            samples["plain"].append(timeit.timeit(call, number=PROFILE_NUMBER) / PROFILE_NUMBER * 1e9)
            for name, stack in (("profiler with_stack", True), ("profiler ops only", False)):
                with profile(activities=[ProfilerActivity.CPU], with_stack=stack):
                    samples[name].append(timeit.timeit(call, number=PROFILE_NUMBER) / PROFILE_NUMBER * 1e9)
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {k: {"ns_per_forward": v, "ns_per_module_call_over_plain": (v - med["plain"]) / CALLS} for k, v in med.items()}
    print(f"torch.profiler on the same model (no grad), median of {PROFILE_ROUNDS} rounds x {PROFILE_NUMBER} forwards:")
    for k, v in out.items():
        print(f"  {k:<22}{v['ns_per_forward']:>10.0f} ns/forward  {v['ns_per_module_call_over_plain']:>+8.0f} ns per module call")
    return out


def profiler_round(call, number):
    """One round of the profiler cases: ns per forward, plain, under profile(with_stack=True), under profile() (ops only)."""
    from torch.profiler import profile, ProfilerActivity
    out = {"plain": timeit.timeit(call, number=number) / number * 1e9}
    for name, stack in (("profiler with_stack", True), ("profiler ops only", False)):
        with profile(activities=[ProfilerActivity.CPU], with_stack=stack):
            out[name] = timeit.timeit(call, number=number) / number * 1e9
    return out


def serve_profiler():
    """--serve-profiler: one profiler round per "round" line on stdin (see the module docstring)."""
    model = make_model()
    x = torch.randn(1, 8)
    call = lambda: model(x)
    number = int(sys.argv[sys.argv.index("--number") + 1]) if "--number" in sys.argv else PROFILE_NUMBER
    with torch.no_grad():
        for _ in range(300):
            call()
        profiler_round(call, 20)   # the profiler's first use loads and initializes Kineto
        print("READY " + json.dumps({"torch": torch.__version__, "python": platform.python_version(),
                                     "threads": torch.get_num_threads(), "calls_per_forward": CALLS, "number": number}), flush=True)
        for line in sys.stdin:
            if line.strip() != "round":
                break
            print("ROUND " + json.dumps(profiler_round(call, number)), flush=True)


BACKWARD_CASES = ("none", "full", "pre", "grad")


def backward_round(model, x, number):
    """One round of the backward cases: per case, ns per step for the forward (model(x).sum()) and the backward
    (backward() and zero_grad()), timed separately over `number` steps: no hooks; one no-op full backward hook per
    module; one no-op backward pre-hook per module; a gradient hook (tensor.register_hook) on every module's output,
    registered by a forward hook."""
    out = {}
    for case in BACKWARD_CASES:
        if case == "pre" and not hasattr(model, "register_full_backward_pre_hook"):
            continue   # backward pre-hooks came with PyTorch 2.0
        handles = []
        if case == "full":
            handles = [m.register_full_backward_hook(lambda m, gi, go: None) for m in model.modules()]
        elif case == "pre":
            handles = [m.register_full_backward_pre_hook(lambda m, go: None) for m in model.modules()]
        elif case == "grad":
            def add_grad_hook(m, args, y):
                y.register_hook(lambda g: None)
            handles = [m.register_forward_hook(add_grad_hook) for m in model.modules()]
        try:
            for _ in range(20):
                model(x).sum().backward()
            fwd = bwd = 0.0
            clock = time.perf_counter_ns
            for _ in range(number):
                t0 = clock()
                loss = model(x).sum()
                t1 = clock()
                loss.backward()
                model.zero_grad()
                t2 = clock()
                fwd += t1 - t0
                bwd += t2 - t1
            out[case] = {"forward": fwd / number, "backward": bwd / number}
        finally:
            for h in handles:
                h.remove()
    return out


def serve_backward():
    """--serve-backward: one round of the backward cases per "round" line on stdin, answered with "ROUND {...}"
    (per case: ns per step, forward and backward); first a line "READY {...}". The C# backward suite
    (benchmarks/TorchHooks.Benchmarks/BackwardPaired.cs) alternates its own rounds with these."""
    model = make_model()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.randn(1, 8)
    number = int(sys.argv[sys.argv.index("--number") + 1]) if "--number" in sys.argv else 200
    backward_round(model, x, 50)
    print("READY " + json.dumps({"torch": torch.__version__, "python": platform.python_version(),
                                 "threads": torch.get_num_threads(), "calls_per_forward": CALLS, "number": number}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        print("ROUND " + json.dumps(backward_round(model, x, number)), flush=True)


def main():
    torch.set_num_threads(1)
    if "--serve-profiler" in sys.argv:
        serve_profiler()
        return
    if "--serve-backward" in sys.argv:
        serve_backward()
        return
    if "--profiler-only" in sys.argv:
        model = make_model()
        print("JSON " + json.dumps({"torch": torch.__version__, "profiler": profiler_cost(model, torch.randn(1, 8))}))
        return
    model = make_model()
    assert len(list(model.modules())) == CALLS
    x = torch.randn(1, 8)
    call = lambda: model(x)
    fwd = lambda: model.forward(x)   # root's forward only; children still go through __call__

    cases = [("no hooks", None, 0)] + [(f"{k} x{n}", k, n) for k in KINDS for n in (1, 8)]
    samples = {name: [] for name, _, _ in cases}
    samples["root .forward()"] = []
    for _ in range(300):   # warm-up
        call()
    # Interleaved rounds: a burst of load from other processes hits every case alike.
    for _ in range(ROUNDS):
        for name, kind, n in cases:
            handles = register(model, kind, n) if kind else []
            try:
                samples[name].append(timeit.timeit(call, number=NUMBER) / NUMBER * 1e9)
            finally:
                for h in handles:
                    h.remove()
        samples["root .forward()"].append(timeit.timeit(fwd, number=NUMBER) / NUMBER * 1e9)
    med = {name: statistics.median(v) for name, v in samples.items()}

    result = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "calls_per_forward": CALLS,
        "number": NUMBER,
        "rounds": ROUNDS,
        "no_hooks_ns": med["no hooks"],
        "forward_method_ns": med["root .forward()"],
        "kinds": {},
    }
    print(f"PyTorch {result['torch']} (Python {result['python']}), {result['threads']} thread, "
          f"Sequential(Linear(8,8), ReLU) x4 on 1x8, {CALLS} module calls per forward; "
          f"median of {ROUNDS} interleaved samples x {NUMBER} forwards")
    print(f"{'case':<28}{'ns/forward':>12}{'ns/module call':>16}")
    for name in list(samples):
        print(f"{name:<28}{med[name]:>12.0f}{med[name] / CALLS:>16.0f}")
    print("per hook = (x8 - x1) / (7 * 9); first hook = (x1 - no hooks) / 9 (medians of the per-round differences):")
    for kind in KINDS:
        t1, t8 = med[f"{kind} x1"], med[f"{kind} x8"]
        # Paired per round: slow drifts of the machine's load cancel out.
        per_hook = statistics.median((b - a) / (7 * CALLS) for a, b in zip(samples[f"{kind} x1"], samples[f"{kind} x8"]))
        first = statistics.median((b - a) / CALLS for a, b in zip(samples["no hooks"], samples[f"{kind} x1"]))
        result["kinds"][kind] = {"t1_ns": t1, "t8_ns": t8, "per_hook_ns": per_hook, "first_hook_ns": first}
        print(f"  {kind:<16} {per_hook:6.0f} ns per hook per module call (first hook: +{first:.0f} ns per module call)")
    result["backward"] = backward_cost()
    b = result["backward"]
    print(f"backward: forward+backward {b['no_hooks_ns'] / 1000:.1f} us without, {b['hooks_ns'] / 1000:.1f} us with 1 full backward hook "
          f"per module; +{b['per_module_call_ns'] / 1000:.1f} us per module call")
    result["profiler"] = profiler_cost(model, x)
    print("JSON " + json.dumps(result))


def backward_cost():
    model = make_model()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.randn(1, 8)

    def step():
        model(x).sum().backward()
        model.zero_grad()

    samples = {"none": [], "hooks": []}
    for _ in range(100):
        step()
    for _ in range(ROUNDS // 2):
        samples["none"].append(timeit.timeit(step, number=NUMBER // 4) / (NUMBER // 4) * 1e9)
        handles = [m.register_full_backward_hook(lambda m, gi, go: None) for m in model.modules()]
        try:
            samples["hooks"].append(timeit.timeit(step, number=NUMBER // 4) / (NUMBER // 4) * 1e9)
        finally:
            for h in handles:
                h.remove()
    per_call = statistics.median((b - a) / CALLS for a, b in zip(samples["none"], samples["hooks"]))
    return {"no_hooks_ns": statistics.median(samples["none"]), "hooks_ns": statistics.median(samples["hooks"]),
            "per_module_call_ns": per_call}


if __name__ == "__main__":
    main()
