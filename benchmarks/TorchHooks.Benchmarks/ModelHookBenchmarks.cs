using System.Collections.Generic;
using System.Linq;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;
using Sequential = TorchSharp.Modules.Sequential;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// The public call-path hooks (<see cref="ModelHook"/>, Accelerate's hooks): what they cost where they are not
    /// attached — the claim is nothing — and what a no-op hook costs where it is. The 9-module model of suite 1
    /// through its facade, one intra-op thread. Not part of --write-docs; run it on its own:
    /// <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --filter '*ModelHookBenchmarks*' --inProcess --warmupCount 3 --iterationCount 30 --iterationTime 150</c>
    /// (short iterations: a loaded machine otherwise exceeds the in-process toolchain's time limit).
    /// </summary>
    [MemoryDiagnoser, MedianColumn]
    public class ModelHookBenchmarks
    {
        private Sequential _bare = null!;        // wrapped, nothing ever attached
        private Sequential _detached = null!;    // wrapped, a ModelHook attached to every module and removed again
        private Sequential _attached = null!;    // wrapped, a no-op ModelHook on every module
        private Sequential _forwardHooked = null!; // wrapped, a no-op forward hook on every module (for comparison)
        private HookedModule<Tensor, Tensor> _bareFacade = null!, _detachedFacade = null!, _attachedFacade = null!, _forwardFacade = null!;
        private readonly List<RemovableHandle> _handles = new();
        private Tensor _x = null!;

        /// <summary>A hook that changes nothing (the cost of the step itself).</summary>
        private sealed class NoOp : ModelHook { }

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(1);
            _bare = Models.TinyMlp();
            _detached = Models.TinyMlp();
            _attached = Models.TinyMlp();
            _forwardHooked = Models.TinyMlp();
            _bareFacade = _bare.WithHooks();
            _detachedFacade = _detached.WithHooks();
            _attachedFacade = _attached.WithHooks();
            _forwardFacade = _forwardHooked.WithHooks();
            var hook = new NoOp();
            foreach (var p in _detachedFacade.HookPoints()) p.add_hook_to_module(hook).remove();
            foreach (var p in _attachedFacade.HookPoints()) _handles.Add(p.add_hook_to_module(hook));
            foreach (var p in _forwardFacade.HookPoints()) _handles.Add(p.register_forward_hook((m, x, y) => null));
            _x = torch.randn(1, 8);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            foreach (var h in _handles) h.remove();
            _x.Dispose();
            _bare.Dispose();
            _detached.Dispose();
            _attached.Dispose();
            _forwardHooked.Dispose();
        }

        /// <summary>Facade call, no call-path hook ever attached (suite 1's "Facade call, no hooks").</summary>
        [Benchmark(Baseline = true, Description = "Facade call, no ModelHook"), ModuleCalls(Models.TinyMlpCalls)]
        public void NoModelHook()
        {
            using var y = _bareFacade.call(_x);
        }

        /// <summary>Facade call after a ModelHook was attached to every module and removed: back on the fast path.</summary>
        [Benchmark(Description = "Facade call, ModelHook attached and removed"), ModuleCalls(Models.TinyMlpCalls)]
        public void ModelHookRemoved()
        {
            using var y = _detachedFacade.call(_x);
        }

        /// <summary>Facade call with a no-op ModelHook on all 9 modules.</summary>
        [Benchmark(Description = "Facade call, no-op ModelHook on every module"), ModuleCalls(Models.TinyMlpCalls)]
        public void ModelHookOnEveryModule()
        {
            using var y = _attachedFacade.call(_x);
        }

        /// <summary>Facade call with a no-op forward hook on all 9 modules (the same step count through the older concern).</summary>
        [Benchmark(Description = "Facade call, no-op forward hook on every module"), ModuleCalls(Models.TinyMlpCalls)]
        public void ForwardHookOnEveryModule()
        {
            using var y = _forwardFacade.call(_x);
        }
    }
}

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--model-hook-probe [rounds]</c>: the same question as <see cref="ModelHookBenchmarks"/> on the managed chain
    /// (9 pass-through module calls: the call path's own cost shows most), by Stopwatch in alternating rounds in one
    /// process, so that a loaded machine's drift hits every case alike. Prints the median ns per module call of each
    /// case and its median difference to the baseline measured in the same round.
    /// </summary>
    internal static class ModelHookProbe
    {
        private sealed class NoOp : ModelHook { }

        public static int Run(string[] args)
        {
            int rounds = args.SkipWhile(a => a != "--model-hook-probe").Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault();
            rounds = rounds > 0 ? rounds : 21;
            torch.set_num_threads(1);
            using var input = torch.randn(1, 8);
            var hook = new NoOp();
            HookedModule<Tensor, Tensor> Chain(System.Action<HookPoint>? each)
            {
                var facade = Models.ManagedChain().WithHooks();
                if (each is not null) foreach (var p in facade.HookPoints()) each(p);
                return facade;
            }
            var models = new[]
            {
                ("facade, no ModelHook (baseline)", Chain(null)),
                ("facade, ModelHook attached and removed", Chain(p => p.add_hook_to_module(hook).remove())),
                ("facade, forward hook attached and removed", Chain(p => p.register_forward_hook((m, x, y) => null).remove())),
                ("facade, no-op ModelHook on every module", Chain(p => p.add_hook_to_module(hook))),
                ("facade, no-op forward hook on every module", Chain(p => p.register_forward_hook((m, x, y) => null))),
            };
            const int N = 100_000;
            var perCall = models.Select(_ => new List<double>()).ToArray();
            var delta = models.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < rounds; round++)
            {
                var now = new double[models.Length];
                for (int c = 0; c < models.Length; c++)
                {
                    var facade = models[c].Item2;
                    for (int i = 0; i < 1_000; i++) facade.call(input);
                    long start = System.Diagnostics.Stopwatch.GetTimestamp();
                    for (int i = 0; i < N; i++) facade.call(input);
                    now[c] = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalNanoseconds / N / Models.ManagedChainCalls;
                    perCall[c].Add(now[c]);
                }
                for (int c = 0; c < models.Length; c++) delta[c].Add(now[c] - now[0]);
            }
            static double Mid(List<double> v) { v.Sort(); return v[v.Count / 2]; }
            foreach (var (c, name) in models.Select((m, i) => (i, m.Item1)))
                System.Console.WriteLine($"{name,-44} {Mid(perCall[c]),7:F1} ns per module call, {Mid(delta[c]),6:+0.0;-0.0} vs baseline (median of {rounds} paired rounds)");
            return 0;
        }
    }
}
