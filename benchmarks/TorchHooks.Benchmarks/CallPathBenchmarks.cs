using System;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;
using Sequential = TorchSharp.Modules.Sequential;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 1: the facade with no hooks registered against TorchSharp's own <c>call</c>, on a model whose
    /// cost is dispatch (9 module calls on a 1×8 input). One intra-op thread: with tiny tensors libtorch's
    /// thread pool only adds wake-up jitter, and one thread is how a dispatch-bound workload is measured
    /// (PyTorch's reference number was taken with 1 thread too).
    /// </summary>
    [MemoryDiagnoser]
    public class DispatchBenchmarks
    {
        private Sequential _plain = null!;     // never wrapped: TorchSharp's call with empty hook dictionaries
        private Sequential _wrapped = null!;   // wrapped once, nothing registered: TorchSharp's bare path (issue 12)
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(1);
            _plain = Models.TinyMlp();
            _wrapped = Models.TinyMlp();
            _facade = _wrapped.WithHooks();
            _x = torch.randn(1, 8);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _x.Dispose();
            _plain.Dispose();
            _wrapped.Dispose();
        }

        /// <summary>TorchSharp's own call on a model that was never wrapped.</summary>
        [Benchmark(Baseline = true, Description = "TorchSharp call (never wrapped)"), ModuleCalls(Models.TinyMlpCalls)]
        public void TorchSharpCall()
        {
            using var y = _plain.call(_x);
        }

        /// <summary>The facade, no hooks registered: fast path on every module.</summary>
        [Benchmark(Description = "Facade call, no hooks"), ModuleCalls(Models.TinyMlpCalls)]
        public void FacadeCall()
        {
            using var y = _facade.call(_x);
        }

        /// <summary>The wrapped model called directly (not through the facade): dispatcher hooks only.</summary>
        [Benchmark(Description = "Wrapped model's own call, no hooks"), ModuleCalls(Models.TinyMlpCalls)]
        public void WrappedModelCall()
        {
            using var y = _wrapped.call(_x);
        }
    }

    /// <summary>
    /// Suite 2: the same comparison on a compute-bound model (4 × Linear(1024,1024) on 64×1024, 5 module
    /// calls). libtorch uses every core here (its default), as a real workload would.
    /// </summary>
    [MemoryDiagnoser]
    public class ComputeBenchmarks
    {
        private Sequential _plain = null!;
        private Sequential _wrapped = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(Environment.ProcessorCount);
            _plain = Models.WideMlp();
            _wrapped = Models.WideMlp();
            _facade = _wrapped.WithHooks();
            _x = torch.randn(64, 1024);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _x.Dispose();
            _plain.Dispose();
            _wrapped.Dispose();
        }

        [Benchmark(Baseline = true, Description = "TorchSharp call (never wrapped)"), ModuleCalls(Models.WideMlpCalls)]
        public void TorchSharpCall()
        {
            using var y = _plain.call(_x);
        }

        [Benchmark(Description = "Facade call, no hooks"), ModuleCalls(Models.WideMlpCalls)]
        public void FacadeCall()
        {
            using var y = _facade.call(_x);
        }
    }
}

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 1b: suite 1 on <see cref="Models.ManagedChain"/> — 9 module calls that do nothing but the call
    /// path (managed pass-through forwards, no native work, no allocation). What TorchSharp's own call costs
    /// and what TorchHooks adds per module call, to the nanosecond. The output is the input: nothing to dispose.
    /// </summary>
    [MemoryDiagnoser]
    public class ChainDispatchBenchmarks
    {
        private Chain _plain = null!;
        private Chain _wrapped = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(1);
            _plain = Models.ManagedChain();
            _wrapped = Models.ManagedChain();
            _facade = _wrapped.WithHooks();
            _x = torch.zeros(1, 8);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _x.Dispose();
            _plain.Dispose();
            _wrapped.Dispose();
        }

        [Benchmark(Baseline = true, Description = "TorchSharp call (never wrapped)"), ModuleCalls(Models.ManagedChainCalls)]
        public Tensor TorchSharpCall() => _plain.call(_x);

        [Benchmark(Description = "Facade call, no hooks"), ModuleCalls(Models.ManagedChainCalls)]
        public Tensor FacadeCall() => _facade.call(_x);

        [Benchmark(Description = "Wrapped model's own call, no hooks"), ModuleCalls(Models.ManagedChainCalls)]
        public Tensor WrappedModelCall() => _wrapped.call(_x);
    }
}
