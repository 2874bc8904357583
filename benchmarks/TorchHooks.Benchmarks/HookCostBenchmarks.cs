using System;
using System.Collections.Generic;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;
using Sequential = TorchSharp.Modules.Sequential;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 3: what a registered no-op hook costs. A 9-module model through its facade, with 1 or 8 no-op
    /// hooks of one kind on every one of its modules (local) or registered globally (global hooks run for all
    /// 9 module calls). Per-hook cost = (8 hooks − 1 hook) / (7 × 9 module calls); the step from no hook to 1
    /// hook also contains the full path's fixed cost (call frame, snapshots). One intra-op thread.
    /// </summary>
    [MemoryDiagnoser]
    public abstract class HookCostBenchmarks
    {
        private torch.nn.Module<Tensor, Tensor> _model = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        protected Tensor X = null!;
        private readonly List<RemovableHandle> _handles = new();

        // No-op hooks (static lambdas: no closure, no allocation per call).
        private static readonly ForwardPreHook<Tensor> s_pre = (m, x) => null;
        private static readonly ForwardHook<Tensor, Tensor> s_post = (m, x, y) => null;

        protected abstract torch.nn.Module<Tensor, Tensor> Build();

        /// <summary>One forward through the facade (disposing the output where there is a new one).</summary>
        protected abstract void Forward(HookedModule<Tensor, Tensor> facade);

        private void Setup()
        {
            torch.set_num_threads(1);
            _model = Build();
            _facade = _model.WithHooks();
            X = torch.randn(1, 8);
        }

        private void Local(bool pre, int count)
        {
            Setup();
            foreach (var path in _facade.Paths)
                for (int i = 0; i < count; i++)
                    _handles.Add(pre ? _facade[path].register_forward_pre_hook(s_pre) : _facade[path].register_forward_hook(s_post));
        }

        private void Global(bool pre, int count)
        {
            Setup();
            for (int i = 0; i < count; i++)
                _handles.Add(pre ? ModuleHooks.register_module_forward_pre_hook(s_pre) : ModuleHooks.register_module_forward_hook(s_post));
        }

        /// <summary>The tree armed (a hook registered on the root and removed): the dispatchers are on every module, nothing runs.</summary>
        private void Armed()
        {
            Setup();
            _facade[""].register_forward_hook(s_post).Dispose();
        }

        [GlobalSetup(Target = nameof(NoHooks))] public void SetupNone() => Setup();
        [GlobalSetup(Target = nameof(ArmedNoHooks))] public void SetupArmed() => Armed();
        [GlobalSetup(Target = nameof(Pre1))] public void SetupPre1() => Local(pre: true, 1);
        [GlobalSetup(Target = nameof(Pre8))] public void SetupPre8() => Local(pre: true, 8);
        [GlobalSetup(Target = nameof(Post1))] public void SetupPost1() => Local(pre: false, 1);
        [GlobalSetup(Target = nameof(Post8))] public void SetupPost8() => Local(pre: false, 8);
        [GlobalSetup(Target = nameof(GlobalPre1))] public void SetupGlobalPre1() => Global(pre: true, 1);
        [GlobalSetup(Target = nameof(GlobalPre8))] public void SetupGlobalPre8() => Global(pre: true, 8);
        [GlobalSetup(Target = nameof(GlobalPost1))] public void SetupGlobalPost1() => Global(pre: false, 1);
        [GlobalSetup(Target = nameof(GlobalPost8))] public void SetupGlobalPost8() => Global(pre: false, 8);

        [GlobalCleanup]
        public void Cleanup()
        {
            // Global hooks reach every wrapped model in the process: always remove them.
            foreach (var h in _handles) h.remove();
            _handles.Clear();
            X.Dispose();
            _model.Dispose();
        }

        [Benchmark(Baseline = true, Description = "Facade, no hooks"), ModuleCalls(9), HooksPerCall("none", 0)]
        public void NoHooks() => Forward(_facade);

        [Benchmark(Description = "Facade, armed tree, no hooks (a hook was added and removed)"), ModuleCalls(9), HooksPerCall("none", 0)]
        public void ArmedNoHooks() => Forward(_facade);

        [Benchmark(Description = "1 pre-hook per module"), ModuleCalls(9), HooksPerCall("local pre", 1)]
        public void Pre1() => Forward(_facade);

        [Benchmark(Description = "8 pre-hooks per module"), ModuleCalls(9), HooksPerCall("local pre", 8)]
        public void Pre8() => Forward(_facade);

        [Benchmark(Description = "1 forward hook per module"), ModuleCalls(9), HooksPerCall("local forward", 1)]
        public void Post1() => Forward(_facade);

        [Benchmark(Description = "8 forward hooks per module"), ModuleCalls(9), HooksPerCall("local forward", 8)]
        public void Post8() => Forward(_facade);

        [Benchmark(Description = "1 global pre-hook"), ModuleCalls(9), HooksPerCall("global pre", 1)]
        public void GlobalPre1() => Forward(_facade);

        [Benchmark(Description = "8 global pre-hooks"), ModuleCalls(9), HooksPerCall("global pre", 8)]
        public void GlobalPre8() => Forward(_facade);

        [Benchmark(Description = "1 global forward hook"), ModuleCalls(9), HooksPerCall("global forward", 1)]
        public void GlobalPost1() => Forward(_facade);

        [Benchmark(Description = "8 global forward hooks"), ModuleCalls(9), HooksPerCall("global forward", 8)]
        public void GlobalPost8() => Forward(_facade);
    }

    /// <summary>Suite 3 on the tiny MLP of suite 1 (the model PyTorch's comparison script uses).</summary>
    [MemoryDiagnoser]
    public class MlpHookCostBenchmarks : HookCostBenchmarks
    {
        protected override torch.nn.Module<Tensor, Tensor> Build() => Models.TinyMlp();

        protected override void Forward(HookedModule<Tensor, Tensor> facade)
        {
            using var y = facade.call(X);
        }
    }

    /// <summary>Suite 3b on the managed pass-through chain of suite 1b: the hooks' own cost to the nanosecond.</summary>
    [MemoryDiagnoser]
    public class ChainHookCostBenchmarks : HookCostBenchmarks
    {
        protected override torch.nn.Module<Tensor, Tensor> Build() => Models.ManagedChain();

        protected override void Forward(HookedModule<Tensor, Tensor> facade) => facade.call(X);
    }

    /// <summary>
    /// Suite 4: wrapping a whole tree once. <c>WithHooks()</c> on a fresh 201-module model (built in
    /// [IterationSetup], not timed), against building that model (context for the one-time cost).
    /// One invocation per iteration.
    /// </summary>
    [MemoryDiagnoser]
    public class WrapBenchmarks
    {
        private Sequential? _fresh;

        [IterationSetup(Target = nameof(WithHooks))]
        public void BuildFresh() => _fresh = Models.DeepModel();

        [IterationCleanup]
        public void DisposeModel()
        {
            _fresh?.Dispose();
            _fresh = null;
        }

        /// <summary>Building the model itself (201 modules; 80 Linear and 20 LayerNorm with native parameters).</summary>
        [Benchmark(Baseline = true, Description = "Build the 201-module model (context)"), ModuleCalls(Models.DeepModelModules)]
        public void BuildModel() => _fresh = Models.DeepModel();

        /// <summary>Wrap the fresh model: walk the tree, install the dispatcher hook pair on every module.</summary>
        [Benchmark(Description = "WithHooks() on the fresh model"), ModuleCalls(Models.DeepModelModules)]
        public object WithHooks() => _fresh!.WithHooks();
    }
}
