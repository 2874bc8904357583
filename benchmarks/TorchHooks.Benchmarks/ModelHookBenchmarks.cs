using System.Collections.Generic;
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
    /// <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --filter '*ModelHookBenchmarks*'</c>.
    /// </summary>
    [MemoryDiagnoser]
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
