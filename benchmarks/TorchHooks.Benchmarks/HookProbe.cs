using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--hook-probe [rounds]</c>: a quick Stopwatch look at suite 1b/3b's cases on the managed chain (9 module calls
    /// per forward), alternating rounds in one process, medians in ns per module call: the never-wrapped model, the
    /// facade with nothing registered, an armed tree with nothing on the called modules, one local pre-hook per
    /// module, one local forward hook per module. For trying a change to the call path in seconds; the suites stay
    /// the figures of record.
    /// </summary>
    internal static class HookProbe
    {
        private static readonly ForwardPreHook<Tensor> s_pre = (m, x) => null;
        private static readonly ForwardHook<Tensor, Tensor> s_post = (m, x, y) => null;

        public static int Run(string[] args)
        {
            int rounds = args.SkipWhile(a => a != "--hook-probe").Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault();
            if (rounds <= 0) rounds = 15;
            torch.set_num_threads(1);
            using var x = torch.randn(1, 8);

            var raw = Models.ManagedChain();
            var bare = Models.ManagedChain().WithHooks();
            var armed = Models.ManagedChain().WithHooks();
            var armedHandle = armed["0"].register_forward_hook(s_post);
            armedHandle.Dispose();
            var pre = Models.ManagedChain().WithHooks();
            foreach (var p in pre.Paths) pre[p].register_forward_pre_hook(s_pre);
            var post = Models.ManagedChain().WithHooks();
            foreach (var p in post.Paths) post[p].register_forward_hook(s_post);

            var cases = new (string Name, Action Run)[]
            {
                ("never wrapped (TorchSharp call)", () => raw.call(x)),
                ("facade, nothing registered", () => bare.call(x)),
                ("facade, armed tree, no hook", () => armed.call(x)),
                ("facade, 1 pre-hook per module", () => pre.call(x)),
                ("facade, 1 forward hook per module", () => post.call(x)),
            };
            if (Environment.GetEnvironmentVariable("TORCHHOOKS_PROBE_ONLY") is { } only)
            {
                // One case for a profiler (e.g. perf record with DOTNET_PerfMapEnabled=1): runs it for 10 s.
                var run = cases[int.Parse(only)].Run;
                var until = Stopwatch.StartNew();
                while (until.ElapsedMilliseconds < 10_000) for (int i = 0; i < 10_000; i++) run();
                return 0;
            }
            var samples = cases.Select(_ => new List<double>()).ToArray();
            const int Calls = 200_000;
            for (int round = 0; round < rounds; round++)
                for (int c = 0; c < cases.Length; c++)
                {
                    var run = cases[c].Run;
                    for (int i = 0; i < 2_000; i++) run();
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < Calls; i++) run();
                    samples[c].Add(sw.Elapsed.TotalNanoseconds / Calls / Models.ManagedChainCalls);
                }
            double baseline = Median(samples[0]);
            for (int c = 0; c < cases.Length; c++)
                Console.WriteLine($"{cases[c].Name,-36} {Median(samples[c]),7:F1} ns per module call  ({Median(samples[c]) - baseline:+0.0;-0.0} vs never wrapped)");
            return 0;
        }

        private static double Median(List<double> values)
        {
            var sorted = values.OrderBy(v => v).ToArray();
            return sorted[sorted.Length / 2];
        }
    }
}
