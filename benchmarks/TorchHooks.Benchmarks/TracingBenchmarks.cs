using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;
using Sequential = TorchSharp.Modules.Sequential;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 5: what tracing costs per module call, on the tiny MLP of suites 1 and 3 (9 module calls per forward,
    /// 1x8 input, no grad, one intra-op thread) — the model benchmarks/pytorch_hook_cost.py profiles with
    /// torch.profiler. Cases: tracing off (no tracer, no listener: the fast path), a <see cref="ModuleTracer"/>
    /// recording everything (shapes, dtypes, devices, grad flags, training, autocast), one recording calls only
    /// (<see cref="TracerOptions.RecordTensors"/> off), an OpenTelemetry-style <see cref="ActivityListener"/> that
    /// samples every span with all data (what the OpenTelemetry SDK does with AlwaysOnSampler), and an activation
    /// cache of every module's output. Per module call = (case − off) / 9.
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --filter '*TracingBenchmarks*'</c>
    /// </summary>
    [MemoryDiagnoser]
    public class TracingBenchmarks
    {
        private Sequential _model = null!;
        private HookedModule<Tensor, Tensor> _facade = null!;
        private Tensor _x = null!;
        private ModuleTracer? _tracer;
        private ActivityListener? _listener;
        private ActivationCache? _cache;
        private System.IDisposable? _noGrad;

        private void Setup()
        {
            torch.set_num_threads(1);
            _model = Models.TinyMlp();
            _facade = _model.WithHooks();
            _x = torch.randn(1, 8);
            _noGrad = torch.no_grad();
        }

        [GlobalSetup(Target = nameof(Off))] public void SetupOff() => Setup();

        [GlobalSetup(Target = nameof(Tracer))]
        public void SetupTracer() { Setup(); _tracer = _facade.Trace(new TracerOptions { MaxCalls = 10_000_000 }); }

        [GlobalSetup(Target = nameof(TracerNoTensors))]
        public void SetupTracerNoTensors() { Setup(); _tracer = _facade.Trace(new TracerOptions { MaxCalls = 10_000_000, RecordTensors = false }); }

        [GlobalSetup(Target = nameof(OpenTelemetrySpans))]
        public void SetupListener()
        {
            Setup();
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name == TorchHooksTelemetry.ActivitySourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            };
            ActivitySource.AddActivityListener(_listener);
        }

        [GlobalSetup(Target = nameof(CacheAllOutputs))]
        public void SetupCache() { Setup(); _cache = _facade.CacheActivations(new CacheOptions { Clone = false }); }

        /// <summary>Keeps the tracer bounded in memory across BenchmarkDotNet's millions of invocations without timing the clear.</summary>
        [IterationCleanup]
        public void Clear()
        {
            _tracer?.Clear();
            _cache?.Clear();
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            _tracer?.Dispose();
            _listener?.Dispose();
            _cache?.Dispose();
            _noGrad?.Dispose();
            _x.Dispose();
            _model.Dispose();
        }

        [Benchmark(Baseline = true, Description = "Tracing off (no tracer, no listener)")]
        public void Off() { using var y = _facade.call(_x); }

        [Benchmark(Description = "ModuleTracer, shapes/dtypes/devices recorded")]
        public void Tracer() { using var y = _facade.call(_x); }

        [Benchmark(Description = "ModuleTracer, RecordTensors = false")]
        public void TracerNoTensors() { using var y = _facade.call(_x); }

        [Benchmark(Description = "OpenTelemetry spans (listener, all data)")]
        public void OpenTelemetrySpans() { using var y = _facade.call(_x); }

        [Benchmark(Description = "ActivationCache of every output (Clone = false)")]
        public void CacheAllOutputs() { using var y = _facade.call(_x); }
    }
}
