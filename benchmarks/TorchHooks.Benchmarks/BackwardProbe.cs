using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--backward-probe [rounds]</c>: suite 6's step (tiny MLP, forward + backward through the facade, one thread),
    /// without and with one no-op full backward hook on each of its 9 modules, alternating in rounds in one process;
    /// per round the median of 200 steps, split into forward and backward; prints medians over rounds and the extra
    /// per module call, plus managed bytes allocated per step. <c>--profile-seconds S</c>: only hooked steps for S
    /// seconds (run it under <c>perf record</c> with <c>DOTNET_PerfMapEnabled=1</c> to see where a hooked step's time goes).
    /// </summary>
    internal static class BackwardProbe
    {
        public static int Run(string[] args)
        {
            int rounds = args.SkipWhile(a => a != "--backward-probe").Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault();
            if (rounds <= 0) rounds = 9;
            torch.set_num_threads(1);
            var model = Models.TinyMlp();
            foreach (var p in model.parameters()) p.requires_grad = true;
            var facade = model.WithHooks();
            var x = torch.randn(1, 8);
            FullBackwardHook hook = (m, gi, go) => null;
            var handles = new List<RemovableHandle>();

            double fwdT = 0, bwdT = 0;
            void Step()
            {
                using var d = torch.NewDisposeScope();
                long t0 = Stopwatch.GetTimestamp();
                var y = facade.call(x);
                var loss = y.sum();
                long t1 = Stopwatch.GetTimestamp();
                loss.backward();
                long t2 = Stopwatch.GetTimestamp();
                model.zero_grad();
                fwdT = (t1 - t0) * 1e6 / Stopwatch.Frequency;
                bwdT = (t2 - t1) * 1e6 / Stopwatch.Frequency;
            }
            (double Total, double Fwd, double Bwd, double Bytes) Measure()
            {
                var tot = new List<double>(); var f = new List<double>(); var b = new List<double>();
                long bytes0 = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 200; i++)
                {
                    long t = Stopwatch.GetTimestamp();
                    Step();
                    tot.Add((Stopwatch.GetTimestamp() - t) * 1e6 / Stopwatch.Frequency);
                    f.Add(fwdT); b.Add(bwdT);
                }
                double bytes = (GC.GetAllocatedBytesForCurrentThread() - bytes0) / 200.0;
                return (Stat.Median(tot), Stat.Median(f), Stat.Median(b), bytes);
            }
            for (int i = 0; i < 300; i++) Step();
            foreach (var p in facade.HookPoints()) handles.Add(p.register_full_backward_hook(hook));
            for (int i = 0; i < 300; i++) Step();
            if (args.SkipWhile(a => a != "--profile-seconds").Skip(1).Select(a => double.TryParse(a, out var s) ? s : 0).FirstOrDefault() is > 0 and var seconds)
            {
                // For perf (DOTNET_PerfMapEnabled=1): only hooked steps, for the given time; prints steps done.
                var sw = Stopwatch.StartNew();
                long steps = 0;
                while (sw.Elapsed.TotalSeconds < seconds) { Step(); steps++; }
                Console.WriteLine($"profile: {steps} hooked steps in {sw.Elapsed.TotalSeconds:F1} s");
                return 0;
            }
            foreach (var h in handles) h.remove();
            handles.Clear();

            var none = new List<(double, double, double, double)>();
            var with = new List<(double, double, double, double)>();
            for (int r = 0; r < rounds; r++)
            {
                none.Add(Measure());
                foreach (var p in facade.HookPoints()) handles.Add(p.register_full_backward_hook(hook));
                with.Add(Measure());
                foreach (var h in handles) h.remove();
                handles.Clear();
            }
            double M(List<(double, double, double, double)> l, int k) => Stat.Median(l.Select(v => k switch { 0 => v.Item1, 1 => v.Item2, 2 => v.Item3, _ => v.Item4 }));
            Console.WriteLine($"load {Machine.LoadAverage()}; one thread; tiny MLP, 9 module calls; medians over {rounds} rounds of 200 steps");
            Console.WriteLine($"no backward hooks: step {M(none, 0):F1} us (forward {M(none, 1):F1}, backward {M(none, 2):F1}), {M(none, 3):F0} B/step");
            Console.WriteLine($"1 full backward hook per module: step {M(with, 0):F1} us (forward {M(with, 1):F1}, backward {M(with, 2):F1}), {M(with, 3):F0} B/step");
            double per = Stat.Median(none.Zip(with, (a, b) => (b.Item1 - a.Item1) / Models.TinyMlpCalls));
            double perF = Stat.Median(none.Zip(with, (a, b) => (b.Item2 - a.Item2) / Models.TinyMlpCalls));
            double perB = Stat.Median(none.Zip(with, (a, b) => (b.Item3 - a.Item3) / Models.TinyMlpCalls));
            Console.WriteLine($"extra per module call: {per:F1} us (forward {perF:F1}, backward {perB:F1}); {(M(with, 3) - M(none, 3)) / Models.TinyMlpCalls:F0} B per module call");
            // The identity autograd node alone (AutogradNode), twice per hooked module call.
            var site = new NoSite();
            using (var leaf = torch.randn(1, 8).requires_grad_())
            {
                var wraps = new List<double>();
                for (int r = 0; r < 5; r++)
                {
                    long b0 = GC.GetAllocatedBytesForCurrentThread();
                    long t = Stopwatch.GetTimestamp();
                    var one = new[] { leaf };
                    var result = new Tensor[1];
                    for (int i = 0; i < 1000; i++)
                    {
                        AutogradNode.Identity(site, one, result);
                        result[0].Dispose();
                    }
                    wraps.Add((Stopwatch.GetTimestamp() - t) * 1e3 / Stopwatch.Frequency);
                    if (r == 4) Console.WriteLine($"AutogradNode.Identity (one tensor): {Stat.Median(wraps):F2} us per node, {(GC.GetAllocatedBytesForCurrentThread() - b0) / 1000.0:F0} B");
                }
            }
            return 0;
        }

        private sealed class NoSite : GradientSite
        {
            public override Tensor?[] OnBackward(Tensor?[] grads) => grads;
            public override string Where => "probe";
        }
    }
}
