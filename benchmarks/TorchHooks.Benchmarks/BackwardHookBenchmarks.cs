using System.Collections.Generic;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 6: what one full backward hook per module call costs. Forward + backward of the tiny MLP of suite 1
    /// (9 module calls, parameters requiring grad, 1x8 input) through its facade, without backward hooks and with
    /// one no-op full backward hook on every module (9 hooks firing per step). Per module call =
    /// (with − without) / 9. benchmarks/pytorch_hook_cost.py measures the same on PyTorch ("backward" section).
    /// One intra-op thread.
    /// </summary>
    [MemoryDiagnoser]
    public class BackwardHookBenchmarks
    {
        private TorchSharp.Modules.Sequential _model = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;
        private readonly List<RemovableHandle> _handles = new();
        private static readonly FullBackwardHook s_hook = (m, gi, go) => null;

        private void Setup(bool hooks)
        {
            torch.set_num_threads(1);
            _model = Models.TinyMlp();
            foreach (var p in _model.parameters()) p.requires_grad = true;
            _facade = _model.WithHooks();
            _x = torch.randn(1, 8);
            if (hooks)
                foreach (var point in _facade.HookPoints())
                    _handles.Add(point.register_full_backward_hook(s_hook));
        }

        [GlobalSetup(Target = nameof(NoBackwardHooks))] public void SetupNone() => Setup(false);
        [GlobalSetup(Target = nameof(OneFullBackwardHookPerModule))] public void SetupOne() => Setup(true);

        [GlobalCleanup]
        public void Cleanup()
        {
            foreach (var h in _handles) h.remove();
            _handles.Clear();
            _x.Dispose();
            _model.Dispose();
        }

        private void Step()
        {
            using var d = torch.NewDisposeScope();
            var y = _facade.call(_x);
            var loss = y.sum();
            loss.Backward();
            _model.zero_grad();
        }

        [Benchmark(Baseline = true, Description = "forward+backward, no backward hooks"), ModuleCalls(9)]
        public void NoBackwardHooks() => Step();

        [Benchmark(Description = "forward+backward, 1 full backward hook per module"), ModuleCalls(9)]
        public void OneFullBackwardHookPerModule() => Step();
    }
}
