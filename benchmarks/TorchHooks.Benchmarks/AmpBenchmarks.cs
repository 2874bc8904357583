using System;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;
using Linear = TorchSharp.Modules.Linear;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 5a (issue 4): a matmul-heavy forward, Linear(2048,2048) on 512×2048 (4.3 GFLOP), in float32,
    /// under bf16 autocast (the region is entered per forward, so weight casts are included), and with
    /// bf16 weights and input and no autocast (the raw bf16 GEMM, to separate kernel speed from cast cost).
    /// Inference (no_grad). libtorch uses every core.
    /// </summary>
    [MemoryDiagnoser]
    public class AmpForwardBenchmarks
    {
        private Linear _lin = null!;
        private Linear _linBf16 = null!;
        private Tensor _x = null!;
        private Tensor _xBf16 = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(Environment.ProcessorCount);
            torch.manual_seed(3);
            _lin = torch.nn.Linear(2048, 2048);
            _linBf16 = torch.nn.Linear(2048, 2048);
            _linBf16.to(ScalarType.BFloat16);
            foreach (var p in _linBf16.parameters()) p.requires_grad = false;
            _x = torch.randn(512, 2048);
            _xBf16 = _x.to(ScalarType.BFloat16);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _x.Dispose(); _xBf16.Dispose(); _lin.Dispose(); _linBf16.Dispose();
        }

        [Benchmark(Baseline = true, Description = "float32 forward")]
        public void Float32()
        {
            using var _ = torch.no_grad();
            using var y = _lin.call(_x);
        }

        [Benchmark(Description = "bf16 autocast forward (float32 weights and input)")]
        public void Bf16Autocast()
        {
            using var _ = torch.no_grad();
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                using var y = _lin.call(_x);
            }
        }

        [Benchmark(Description = "bf16 weights and input, no autocast (raw bf16 GEMM)")]
        public void Bf16Raw()
        {
            using var _ = torch.no_grad();
            using var y = _linBf16.call(_xBf16);
        }
    }

    /// <summary>
    /// Suite 5b (issue 4): one training step of the same layer — zero_grad, forward, MSE loss, backward,
    /// SGD step — in float32 and with forward + loss under bf16 autocast (backward outside the region, as in
    /// PyTorch's recipe). libtorch uses every core.
    /// </summary>
    [MemoryDiagnoser]
    public class AmpTrainingBenchmarks
    {
        private Linear _lin = null!;
        private torch.optim.Optimizer _opt = null!;
        private Tensor _x = null!;
        private Tensor _target = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(Environment.ProcessorCount);
            torch.manual_seed(4);
            _lin = torch.nn.Linear(2048, 2048);
            _opt = torch.optim.SGD(_lin.parameters(), 1e-4);
            _x = torch.randn(512, 2048);
            _target = torch.randn(512, 2048);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _x.Dispose(); _target.Dispose(); _lin.Dispose();
        }

        [Benchmark(Baseline = true, Description = "float32 training step")]
        public void Float32()
        {
            using var scope = torch.NewDisposeScope();
            _opt.zero_grad();
            var loss = torch.nn.functional.mse_loss(_lin.call(_x), _target);
            loss.backward();
            _opt.step();
        }

        [Benchmark(Description = "bf16 autocast training step")]
        public void Bf16Autocast()
        {
            using var scope = torch.NewDisposeScope();
            _opt.zero_grad();
            Tensor loss;
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                loss = torch.nn.functional.mse_loss(_lin.call(_x), _target);
            }
            loss.backward();
            _opt.step();
        }
    }

    /// <summary>
    /// Suite 5c: the autocast region's own cost — enter + exit of an empty region — through the public scope
    /// object (<c>Amp.autocast</c>), the allocation-free token (<c>Amp.Enter</c>), and libtorch's switches
    /// called directly (what PyTorch's <c>torch.autocast.__enter__/__exit__</c> do natively: save, set, nest;
    /// unnest, clear the cast cache at depth 0, restore).
    /// </summary>
    [MemoryDiagnoser]
    public class AutocastScopeBenchmarks
    {
        [GlobalSetup]
        public void Setup() => AutocastNative.EnsureBound();

        [Benchmark(Baseline = true, Description = "libtorch switches called directly")]
        public void Native()
        {
            var prevCache = AutocastNative.IsAutocastCacheEnabled();
            var prevEnabled = AutocastNative.IsAutocastEnabled(DeviceType.CPU);
            var prevDtype = AutocastNative.GetAutocastDtype(DeviceType.CPU);
            AutocastNative.SetAutocastEnabled(DeviceType.CPU, true);
            AutocastNative.SetAutocastDtype(DeviceType.CPU, ScalarType.BFloat16);
            AutocastNative.IncrementNesting();
            AutocastNative.SetAutocastCacheEnabled(prevCache);

            if (AutocastNative.DecrementNesting() == 0) AutocastNative.ClearAutocastCache();
            AutocastNative.SetAutocastEnabled(DeviceType.CPU, prevEnabled);
            AutocastNative.SetAutocastDtype(DeviceType.CPU, prevDtype);
            AutocastNative.SetAutocastCacheEnabled(prevCache);
        }

        [Benchmark(Description = "Amp.Enter(...) token, enter + Dispose")]
        public void Token()
        {
            using (Amp.Enter(DeviceType.CPU, ScalarType.BFloat16, enabled: true)) { }
        }

        [Benchmark(Description = "Amp.autocast(...) scope, enter + Dispose")]
        public void Scope()
        {
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { }
        }
    }
}

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 5d (issue 12): TorchVision resnet18 on 1×3×224×224, eval, inference (<c>no_grad</c>), one intra-op thread
    /// (the machine is shared; one thread keeps the figures comparable). Ten calls per invocation: float32; a bf16
    /// autocast region around each call of the facade (the natural pattern of a server or an evaluation loop; the
    /// wrapped model's weight casts are kept across regions); the same around each call of the never-wrapped model
    /// (PyTorch's semantics: every region casts all weights again); one region around the ten calls; and bf16 weights
    /// and input with no autocast.
    /// </summary>
    [MemoryDiagnoser]
    public class ResNetBenchmarks
    {
        public const int Calls = 10;
        private TorchSharp.Modules.ResNet _net = null!;
        private TorchSharp.Modules.ResNet _netBf16 = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;
        private Tensor _xBf16 = null!;

        [GlobalSetup]
        public void Setup()
        {
            torch.set_num_threads(1);
            torch.manual_seed(5);
            _net = torchvision.models.resnet18();
            _net.eval();
            _facade = _net.WithHooks();
            _netBf16 = torchvision.models.resnet18();
            _netBf16.load_state_dict(_net.state_dict());
            _netBf16.eval();
            _netBf16.to(ScalarType.BFloat16);
            _x = torch.randn(1, 3, 224, 224);
            _xBf16 = _x.to(ScalarType.BFloat16);
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            Amp.clear_autocast_cache();
            _x.Dispose(); _xBf16.Dispose(); _net.Dispose(); _netBf16.Dispose();
        }

        [Benchmark(Baseline = true, Description = "float32", OperationsPerInvoke = Calls)]
        public void Float32()
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < Calls; i++) { using var y = _net.call(_x); }
        }

        [Benchmark(Description = "bf16 autocast region per call, facade", OperationsPerInvoke = Calls)]
        public void PerCallFacade()
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < Calls; i++)
                using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = _facade.call(_x); }
        }

        [Benchmark(Description = "bf16 autocast region per call, never-wrapped model", OperationsPerInvoke = Calls)]
        public void PerCallRaw()
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < Calls; i++)
                using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = _net.call(_x); }
        }

        [Benchmark(Description = "one bf16 autocast region around the calls", OperationsPerInvoke = Calls)]
        public void OneRegion()
        {
            using var _ = torch.no_grad();
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
                for (int i = 0; i < Calls; i++) { using var y = _net.call(_x); }
        }

        [Benchmark(Description = "bf16 weights and input, no autocast", OperationsPerInvoke = Calls)]
        public void Bf16Weights()
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < Calls; i++) { using var y = _netBf16.call(_xBf16); }
        }
    }
}
