using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 7, backward hooks: one training step (forward, <c>sum</c>, backward, <c>zero_grad</c>) of the tiny MLP
    /// (9 module calls, parameters requiring grad, 1×8, one thread) through its facade with no hooks, one no-op full
    /// backward hook per module, one no-op backward pre-hook per module, and a gradient hook on every module's output
    /// (a forward hook returning <c>y.WithGradHook(g =&gt; null)</c>; PyTorch: <c>y.register_hook</c>). Forward and
    /// backward are timed separately, and the managed bytes allocated per step. In the same run, alternating round by
    /// round, <c>benchmarks/pytorch_hook_cost.py --serve-backward</c> (a child process) times the same cases in PyTorch.
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --backward-paired [--rounds N] [--no-python]</c>;
    /// the docs run (<c>--write-docs</c>) runs it too.
    /// </summary>
    public static class BackwardPaired
    {
        public const int Calls = Models.TinyMlpCalls;

        /// <summary>The section's heading in docs/benchmarks.md.</summary>
        public const string Title = "7. Backward hooks per module call, against PyTorch (one run)";

        public const string NoneCase = "none", FullCase = "full", PreCase = "pre", GradCase = "grad";

        /// <summary>Every case this runner measures (PyTorch's are the same keys, "py." in front).</summary>
        internal static IReadOnlyCollection<string> CaseKeys { get; } = new[] { NoneCase, FullCase, PreCase, GradCase };

        /// <summary>Goal: a full backward hook costs at most this fraction of PyTorch's, per module call.</summary>
        public const double GoalRatio = 0.5;

        /// <summary>Goal: managed bytes allocated per module call with a full backward hook.</summary>
        public const double GoalBytes = 512;

        public sealed class Case
        {
            public string Key = "";
            public string Name = "";
            public bool Python;
            public readonly List<double> Forward = new();
            public readonly List<double> Backward = new();
            public readonly List<double> Bytes = new();
            public double Step => Stat.Median(Forward.Zip(Backward, (f, b) => f + b));
        }

        public sealed class Result
        {
            public readonly List<Case> Cases = new();
            public int Rounds, Number, PythonNumber;
            public string? TorchVersion, PythonError;
            public string LoadBefore = "", LoadAfter = "";
            public TimeSpan Elapsed;
            public Case? this[string key] => Cases.FirstOrDefault(c => c.Key == key && c.Forward.Count > 0);

            /// <summary>Median over rounds of (case − no hooks) / 9 for a part (forward, backward, both), same side.</summary>
            public double PerCall(string key, Func<Case, int, double> part)
            {
                var c = this[key]!;
                var b = this[c.Python ? "py." + NoneCase : NoneCase]!;
                int n = Math.Min(c.Forward.Count, b.Forward.Count);
                return Stat.Median(Enumerable.Range(0, n).Select(i => (part(c, i) - part(b, i)) / Calls));
            }

            public static double Total(Case c, int i) => c.Forward[i] + c.Backward[i];
            public static double Fwd(Case c, int i) => c.Forward[i];
            public static double Bwd(Case c, int i) => c.Backward[i];

            public double BytesPerCall(string key)
            {
                var c = this[key]!;
                var b = this[NoneCase]!;
                return Stat.Median(c.Bytes.Zip(b.Bytes, (x, y) => (x - y) / Calls));
            }
        }

        public static int Run(string[] args) => DocsRun.RunPaired(args, 21, 200, Measure, Markdown);

        public static Result Measure(string root, bool python, int rounds, int number, bool log)
        {
            var total = Stopwatch.StartNew();
            var result = new Result { Rounds = rounds, Number = number, LoadBefore = Machine.LoadAverage() };
            torch.set_num_threads(1);
            using var model = Models.TinyMlp();
            foreach (var p in model.parameters()) p.requires_grad = true;
            var facade = model.WithHooks();
            using var x = torch.randn(1, 8);

            IDisposable Register(Func<HookPoint, RemovableHandle> add)
            {
                var handles = facade.HookPoints().Select(add).ToList();
                return new Handles(handles);
            }
            var cases = new (string Key, string Name, Func<IDisposable?> Start)[]
            {
                (NoneCase, "no backward hooks", () => null),
                (FullCase, "1 full backward hook per module", () => Register(p => p.register_full_backward_hook((m, gi, go) => null))),
                (PreCase, "1 backward pre-hook per module", () => Register(p => p.register_full_backward_pre_hook((m, go) => null))),
                (GradCase, "a gradient hook on every module's output", () => Register(p => p.register_forward_hook((m, a, y) => ((Tensor)y).WithGradHook(g => null)))),
            };
            foreach (var (key, name, _) in cases) result.Cases.Add(new Case { Key = key, Name = name });

            using var py = python ? TracingPaired.ProfilerProcess.Start(root, number, out result.PythonError, "--serve-backward") : null;
            if (py is not null)
            {
                result.TorchVersion = py.TorchVersion;
                result.PythonNumber = py.Number;
                foreach (var (key, name, _) in cases) result.Cases.Add(new Case { Key = "py." + key, Name = name, Python = true });
            }

            double fwd = 0, bwd = 0;
            void Step()
            {
                using var d = torch.NewDisposeScope();
                long t0 = Stopwatch.GetTimestamp();
                var loss = facade.call(x).sum();
                long t1 = Stopwatch.GetTimestamp();
                loss.Backward();
                model.zero_grad();
                long t2 = Stopwatch.GetTimestamp();
                fwd += t1 - t0;
                bwd += t2 - t1;
            }
            foreach (var (_, _, start) in cases)   // first-use costs (JIT of each path) out of the rounds
            {
                using var scope = start();
                for (int i = 0; i < 300; i++) Step();
            }
            double toNs = 1e9 / Stopwatch.Frequency;
            for (int round = 0; round < rounds; round++)
            {
                var order = round % 2 == 0 ? cases : cases.Reverse().ToArray();
                foreach (var (key, _, start) in order)
                {
                    var c = result.Cases.First(k => k.Key == key);
                    using (var scope = start())
                    {
                        for (int i = 0; i < 30; i++) Step();
                        fwd = bwd = 0;
                        long bytes = GC.GetAllocatedBytesForCurrentThread();
                        for (int i = 0; i < number; i++) Step();
                        c.Bytes.Add((GC.GetAllocatedBytesForCurrentThread() - bytes) / (double)number);
                        c.Forward.Add(fwd * toNs / number);
                        c.Backward.Add(bwd * toNs / number);
                    }
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
                if (py is not null && result.PythonError is null)
                {
                    if (py.RoundJson() is { } sample)
                    {
                        foreach (var p in sample.EnumerateObject())
                        {
                            var c = result.Cases.First(k => k.Key == "py." + p.Name);
                            c.Forward.Add(p.Value.GetProperty("forward").GetDouble());
                            c.Backward.Add(p.Value.GetProperty("backward").GetDouble());
                        }
                    }
                    else result.PythonError = py.Error ?? "the script stopped answering";
                }
                if (log)
                {
                    var n = result[NoneCase]!; var f = result[FullCase]!;
                    Console.WriteLine($"// backward round {round + 1} of {rounds}: full hook {(f.Forward[^1] + f.Backward[^1] - n.Forward[^1] - n.Backward[^1]) / Calls / 1000:+0.00;-0.00} µs per module call");
                }
            }
            result.Cases.RemoveAll(c => c.Python && c.Forward.Count < rounds);
            result.LoadAfter = Machine.LoadAverage();
            result.Elapsed = total.Elapsed;
            return result;
        }

        private sealed class Handles : IDisposable
        {
            private readonly List<RemovableHandle> _handles;
            public Handles(List<RemovableHandle> handles) { _handles = handles; }
            public void Dispose() { foreach (var h in _handles) h.remove(); }
        }

        /// <summary>The goal rows: a full backward hook's extra per module call against PyTorch's, and its allocation.</summary>
        internal static IReadOnlyList<GoalRow> GoalRows(Result r)
        {
            var rows = new List<GoalRow>();
            double full = r.PerCall(FullCase, Result.Total);
            if (r[$"py.{FullCase}"] is not null)
            {
                double pyFull = r.PerCall("py." + FullCase, Result.Total);
                double ratio = full / pyFull;
                // As Report's verdicts: no verdict when the rounds disagree about the sign of the hook's cost (noise as large as the effect).
                var c = r[FullCase]!; var n = r[NoneCase]!;
                var diffs = Enumerable.Range(0, Math.Min(c.Forward.Count, n.Forward.Count)).Select(i => Result.Total(c, i) - Result.Total(n, i)).ToList();
                bool noisy = diffs.Count > 1 && Math.Min(diffs.Count(d => d < 0), diffs.Count(d => d > 0)) * 4 > diffs.Count;
                rows.Add(Goals.BackwardFullHook.Row(string.Create(CultureInfo.InvariantCulture, $"{full / 1000:0.00} µs = {ratio:0.00}× PyTorch's {pyFull / 1000:0.00} µs"),
                    noisy || full <= 0 || pyFull <= 0 ? GoalState.Inconclusive : ratio <= GoalRatio ? GoalState.Met : GoalState.Missed));
            }
            else
            {
                rows.Add(Goals.BackwardFullHook.Row(string.Create(CultureInfo.InvariantCulture, $"{full / 1000:0.00} µs (PyTorch did not run: {r.PythonError})"), GoalState.Inconclusive));
            }
            double bytes = r.BytesPerCall(FullCase);
            rows.Add(Goals.BackwardAlloc.Row(string.Create(CultureInfo.InvariantCulture, $"{bytes:0} B"), bytes <= GoalBytes));
            return rows;
        }

        internal static PairedSection Section(Result r) => new(Title, Markdown(r), GoalRows(r));

        public static string Markdown(Result r)
        {
            var inv = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            sb.AppendLine(string.Create(inv, $"Tiny MLP (9 module calls), 1×8, parameters requiring grad, one thread: per step the forward (`facade.call(x).sum()`) and the backward (`Backward()`, `zero_grad()`) are timed separately. {r.Rounds} rounds, alternating: in each, every C# case (declared order, reversed on odd rounds) times {r.Number:N0} steps after 30 warm-up steps") +
                      (r.TorchVersion is null ? "" : string.Create(inv, $", then `{PyTorchResult.Python} {PyTorchResult.Script} --serve-backward` — a child process of this run, started once — times {r.PythonNumber:N0} steps of the same cases in PyTorch {r.TorchVersion}")) +
                      string.Create(inv, $". Per module call = median over rounds of (case − no hooks) / 9, each difference within one round and one side. Load average {r.LoadBefore} before, {r.LoadAfter} after; {r.Elapsed.TotalSeconds:0} s. Command: `dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --backward-paired`."));
            sb.AppendLine();
            sb.AppendLine("| Case | Step (median) | Forward | Backward | Extra per module call | of which forward | of which backward | Allocated per module call |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var c in r.Cases.Where(c => c.Forward.Count > 0))
            {
                bool baseline = c.Key is NoneCase || c.Key == "py." + NoneCase;
                string extra(Func<Case, int, double> part) => baseline ? "" : string.Create(inv, $"{r.PerCall(c.Key, part) / 1000:+0.00;−0.00} µs");
                string alloc = c.Python ? "" : baseline ? string.Create(inv, $"{Stat.Median(c.Bytes):0} B per step") : string.Create(inv, $"{r.BytesPerCall(c.Key):+0;−0} B");
                sb.AppendLine(string.Create(inv, $"| {(c.Python ? $"PyTorch {r.TorchVersion}: " : "")}{c.Name} | {c.Step / 1000:0.0} µs | {Stat.Median(c.Forward) / 1000:0.0} µs | {Stat.Median(c.Backward) / 1000:0.0} µs | {extra(Result.Total)} | {extra(Result.Fwd)} | {extra(Result.Bwd)} | {alloc} |"));
            }
            sb.AppendLine();
            foreach (var g in GoalRows(r))
                sb.AppendLine($"**Goal:** {g.What} {g.Target}: {g.Measured}, {(g.State == GoalState.Met ? "met" : g.State == GoalState.Missed ? "**missed**" : "inconclusive")}.");
            if (r.PythonError is not null) sb.AppendLine().AppendLine($"PyTorch's rounds did not run: {r.PythonError}.");
            else if (r.TorchVersion is not null && r[$"py.{PreCase}"] is null)
                sb.AppendLine().AppendLine($"PyTorch {r.TorchVersion} has no backward pre-hooks (they came with 2.0): no PyTorch row for them.");
            return sb.ToString();
        }
    }
}
