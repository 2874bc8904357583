using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 5, sub-steps: what each step of recording one module call costs, timed in a loop (Stopwatch probes),
    /// median of interleaved rounds. Shows where the tracer's time per module call goes.
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --tracing-probe</c>
    /// </summary>
    public static class TracingProbe
    {
        public static int Run()
        {
            const int n = 100_000, rounds = 11;
            torch.set_num_threads(1);
            using var model = Models.TinyMlp();
            var facade = model.WithHooks();
            using var x = torch.randn(1, 8);
            var lin = model.children().First();
            var node = ((IHookedModule)facade).Tree.HookPoints().First(p => ReferenceEquals(p.Module, lin));
            var gate = new object();
            var list = new List<object>();
            long sink = 0;
            var frame = new CallFrame { Node = node, CallIndex = 0 };
            using var y = ((TorchSharp.Modules.Linear)lin).call(x);
            var withTensors = ModuleTracer.Start(new TracerOptions { MaxCalls = int.MaxValue });
            withTensors.Stop();
            var noTensors = ModuleTracer.Start(new TracerOptions { MaxCalls = int.MaxValue, RecordTensors = false });
            noTensors.Stop();
            var store = new TraceStore(0);
            int k = 0;
            var steps = new (string Name, Action Body)[]
            {
                ("empty loop body", () => { }),
                ("Stopwatch.GetTimestamp", () => sink += Stopwatch.GetTimestamp()),
                ("Thread.CurrentThread (id, name)", () => { var t = Thread.CurrentThread; sink += t.ManagedThreadId + (t.Name is null ? 0 : 1); }),
                ("module.training (TorchSharp)", () => sink += lin.training ? 1 : 0),
                ("module.GetType().Name", () => sink += lin.GetType().Name.Length),
                ("ModuleTracer.AutocastFor", () => sink += ModuleTracer.AutocastFor(node).Cpu is null ? 0 : 1),
                ("x.shape (TorchSharp)", () => sink += x.shape.Length),
                ("x.dtype (TorchSharp)", () => sink += (int)x.dtype),
                ("x.device_type (TorchSharp)", () => sink += (int)x.device_type),
                ("x.requires_grad (TorchSharp)", () => sink += x.requires_grad ? 1 : 0),
                ("x.IsInvalid", () => sink += x.IsInvalid ? 1 : 0),
                ("new TensorInfo(x)", () => sink += new TensorInfo(x).DeviceIndex),
                ("TensorNative.Read (direct, no GC transition)", () => { Span<long> sz = stackalloc long[TensorNative.MaxRank]; TensorNative.Read(x, out var info, sz); sink += info.Rank + sz[0]; }),
                ("TraceStore.Describe(x) (new store per 20,000)", () => { store.Describe(x, out var at, out var c); sink += c; if (++k == 20_000) { k = 0; store = new TraceStore(0); } }),
                ("ModuleTracer Begin+End, tensors (new trace per 20,000)", () => { var t = withTensors.Begin(frame, x, -1, 1); withTensors.End(t, y, 2, false); if (++k == 20_000) { k = 0; withTensors = ModuleTracer.Start(new TracerOptions { MaxCalls = int.MaxValue }); withTensors.Stop(); } }),
                ("ModuleTracer Begin+End, no tensors (new trace per 20,000)", () => { var t = noTensors.Begin(frame, x, -1, 1); noTensors.End(t, y, 2, false); if (++k == 20_000) { k = 0; noTensors = ModuleTracer.Start(new TracerOptions { MaxCalls = int.MaxValue, RecordTensors = false }); noTensors.Stop(); } }),
                ("ModuleTracer.Wants (model's tree)", () => sink += withTensors.Wants(node) ? 1 : 0),
                ("lock + List.Add", () => { lock (gate) { list.Add(gate); if (list.Count > 10000) list.Clear(); } }),
            };
            var samples = steps.ToDictionary(s => s.Name, _ => new List<double>());
            foreach (var (_, body) in steps) for (int i = 0; i < 20_000; i++) body();
            for (int r = 0; r < rounds; r++)
                foreach (var (name, body) in steps)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < n; i++) body();
                    samples[name].Add(sw.Elapsed.TotalMilliseconds * 1e6 / n);
                }
            double empty = Stat.Median(samples[steps[0].Name]);
            Console.WriteLine($"Sub-steps of recording a module call; median of {rounds} rounds x {n:N0}; net of the empty loop body ({empty:0.0} ns); load {Machine.LoadAverage()}");
            foreach (var (name, _) in steps.Skip(1))
                Console.WriteLine($"  {name,-48}{Stat.Median(samples[name]) - empty,8:0.0} ns");
            GC.KeepAlive(sink);
            return 0;
        }
    }
}
