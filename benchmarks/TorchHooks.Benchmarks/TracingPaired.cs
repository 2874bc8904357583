using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 5, paired: the cases of <see cref="TracingBenchmarks"/> timed round by round, interleaved, so that the
    /// load of a shared machine hits every case alike; per module call = median over rounds of (case − off) / 9.
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --tracing-paired</c>
    /// </summary>
    public static class TracingPaired
    {
        public static int Run()
        {
            const int calls = 9, number = 2000, rounds = 41;
            torch.set_num_threads(1);
            using var model = Models.TinyMlp();
            var facade = model.WithHooks();
            using var x = torch.randn(1, 8);
            using var noGrad = torch.no_grad();

            double Time()
            {
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < number; i++) { using var y = facade.call(x); }
                return sw.Elapsed.TotalMilliseconds * 1e6 / number;
            }

            var cases = new (string Name, Func<IDisposable?> Start)[]
            {
                ("off (no tracer, no listener)", () => null),
                ("call path only (listener sampling nothing)", () =>
                {
                    var l = new ActivityListener { ShouldListenTo = s => s.Name == TorchHooksTelemetry.ActivitySourceName, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.None };
                    ActivitySource.AddActivityListener(l);
                    return l;
                }),
                ("ModuleTracer, tensors recorded", () => facade.Trace(new TraceOptions { MaxCalls = 10_000_000 })),
                ("ModuleTracer, RecordTensors = false", () => facade.Trace(new TraceOptions { MaxCalls = 10_000_000, RecordTensors = false })),
                ("OpenTelemetry spans (listener, all data)", () =>
                {
                    var l = new ActivityListener { ShouldListenTo = s => s.Name == TorchHooksTelemetry.ActivitySourceName, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded };
                    ActivitySource.AddActivityListener(l);
                    return l;
                }),
                ("ActivationCache, every output (Clone = false)", () => facade.CacheActivations(new CacheOptions { Clone = false })),
            };
            var samples = cases.ToDictionary(c => c.Name, _ => new List<double>());
            for (int i = 0; i < 3000; i++) { using var y = facade.call(x); }
            for (int r = 0; r < rounds; r++)
                foreach (var (name, start) in cases)
                {
                    using var scope = start();
                    for (int i = 0; i < 200; i++) { using var y = facade.call(x); }   // warm this case
                    samples[name].Add(Time());
                }
            double Median(IEnumerable<double> v) { var a = v.OrderBy(d => d).ToArray(); return a[a.Length / 2]; }
            var off = samples[cases[0].Name];
            Console.WriteLine($"Tiny MLP (9 module calls), 1x8, no grad, 1 thread; median of {rounds} interleaved rounds x {number} forwards; {Environment.ProcessorCount} cores, load {Machine.LoadAverage()}");
            foreach (var (name, _) in cases)
            {
                double perCall = Median(samples[name].Zip(off, (a, b) => (a - b) / calls));
                Console.WriteLine($"{name,-48}{Median(samples[name]),10:0} ns/forward  {perCall,+8:+0;-0} ns per module call");
            }
            return 0;
        }
    }
}
