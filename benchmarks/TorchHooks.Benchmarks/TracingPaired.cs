using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 6, tracing: what recording costs per module call on the tiny MLP (9 module calls, 1×8, no grad, one
    /// thread) — TorchHooks' tracer with and without tensor details, OpenTelemetry spans, an activation cache — and
    /// torch.profiler on the same model, <b>in one run</b>: benchmarks/pytorch_hook_cost.py runs as a child process
    /// (<c>--serve-profiler</c>) and its rounds alternate with ours, so both sides see the same load. Per module call =
    /// median over rounds of (case − untraced) / 9, each difference taken within one round.
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --tracing-paired [--rounds N] [--no-python]</c>;
    /// the docs run (<c>--write-docs</c>) runs it too and writes section 6 of docs/benchmarks.md.
    /// </summary>
    public static class TracingPaired
    {
        public const int Calls = Models.TinyMlpCalls;
        public const double GoalNs = 500;

        /// <summary>The section's heading in docs/benchmarks.md.</summary>
        public const string Title = "6. Tracing: tracer, OpenTelemetry spans and torch.profiler per module call (one run)";

        /// <summary>The untraced case (the baseline) and the tracer's case, which the goal reads.</summary>
        public const string OffCase = "off", TracerCase = "tracer";

        /// <summary>Every C# case this runner measures (the PyTorch ones are "py." + the script's keys).</summary>
        internal static IReadOnlyCollection<string> CaseKeys { get; } = new[] { OffCase, "callpath", TracerCase, "tracer.notensors", "otel", "cache" };

        /// <summary>One case: its name, and per round ns per forward.</summary>
        public sealed class Case
        {
            public string Key = "";
            public string Name = "";
            public bool Python;
            public readonly List<double> Samples = new();
            public double Median => Stat.Median(Samples);
        }

        public sealed class Result
        {
            public readonly List<Case> Cases = new();
            public int Rounds;
            public int Number;
            public int PythonNumber;
            public string LoadBefore = "", LoadAfter = "";
            public string? PythonError;
            public string? TorchVersion;
            public TimeSpan Elapsed;
            public Case this[string key] => Cases.First(c => c.Key == key);
            public bool Has(string key) => Cases.Any(c => c.Key == key && c.Samples.Count > 0);

            /// <summary>Median over rounds of (case − baseline) / 9; the baseline is the same side's untraced forward.</summary>
            public double PerCall(string key)
            {
                var c = this[key];
                var b = this[c.Python ? "py.plain" : "off"];
                return Stat.Median(c.Samples.Zip(b.Samples, (x, y) => (x - y) / Calls));
            }
        }

        public static int Run(string[] args) => DocsRun.RunPaired(args, 41, 2000, Measure, r => Markdown(r, heading: false));

        /// <summary>Runs the C# cases and, alternating with them, the PyTorch script's profiler rounds.</summary>
        public static Result Measure(string root, bool python, int rounds, int number, bool log)
        {
            var total = Stopwatch.StartNew();
            var result = new Result { Rounds = rounds, Number = number, LoadBefore = Machine.LoadAverage() };
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

            static ActivityListener Listener(ActivitySamplingResult sampling)
            {
                var l = new ActivityListener { ShouldListenTo = s => s.Name == TorchHooksTelemetry.ActivitySourceName, Sample = (ref ActivityCreationOptions<ActivityContext> _) => sampling };
                ActivitySource.AddActivityListener(l);
                return l;
            }

            var cases = new (string Key, string Name, Func<IDisposable?> Start)[]
            {
                (OffCase, "untraced (no tracer, no listener: the fast path)", () => null),
                ("callpath", "call path only (a listener that samples nothing)", () => Listener(ActivitySamplingResult.None)),
                (TracerCase, "`ModuleTracer`, tensor details recorded (default)", () => facade.Trace(new TracerOptions { MaxCalls = 10_000_000 })),
                ("tracer.notensors", "`ModuleTracer`, `RecordTensors = false`", () => facade.Trace(new TracerOptions { MaxCalls = 10_000_000, RecordTensors = false })),
                ("otel", "OpenTelemetry spans (listener sampling all data)", () => Listener(ActivitySamplingResult.AllDataAndRecorded)),
                ("cache", "`ActivationCache` of every output (`Clone = false`)", () => facade.CacheActivations(new CacheOptions { Clone = false })),
            };
            foreach (var (key, name, _) in cases) result.Cases.Add(new Case { Key = key, Name = name });

            using var py = python ? ProfilerProcess.Start(root, number / 10, out result.PythonError) : null;
            if (py is not null)
            {
                result.TorchVersion = py.TorchVersion;
                result.PythonNumber = py.Number;
                result.Cases.Add(new Case { Key = "py.plain", Name = "PyTorch, no profiler", Python = true });
                result.Cases.Add(new Case { Key = "py.profiler with_stack", Name = "torch.profiler, `with_stack=True` (module events)", Python = true });
                result.Cases.Add(new Case { Key = "py.profiler ops only", Name = "torch.profiler, ops only", Python = true });
            }

            for (int i = 0; i < 3000; i++) { using var y = facade.call(x); }
            foreach (var (_, _, start) in cases)   // each case once, untimed: first-use costs (JIT of its path) out of the rounds
            {
                using var scope = start();
                for (int i = 0; i < 500; i++) { using var y = facade.call(x); }
            }
            for (int round = 0; round < rounds; round++)
            {
                var order = round % 2 == 0 ? cases : cases.Reverse().ToArray();
                foreach (var (key, _, start) in order)
                {
                    using (var scope = start())
                    {
                        for (int i = 0; i < 200; i++) { using var y = facade.call(x); }   // warm this case
                        result[key].Samples.Add(Time());
                    }
                    // As BenchmarkDotNet does between iterations: a full collection, untimed, so that no case pays for the
                    // garbage (and the finalizers: a closed trace's native chunks) of the one before it.
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
                if (py is not null && result.PythonError is null)
                {
                    if (py.Round() is { } sample)
                        foreach (var (k, v) in sample) result["py." + k].Samples.Add(v);
                    else result.PythonError = py.Error ?? "the script stopped answering";
                }
                if (log) Console.WriteLine($"// tracing round {round + 1} of {rounds}: tracer {Last(result, "tracer") - Last(result, "off"):+0;-0} ns/forward");
            }
            if (result.PythonError is not null)
                result.Cases.RemoveAll(c => c.Python && c.Samples.Count < rounds);
            result.LoadAfter = Machine.LoadAverage();
            result.Elapsed = total.Elapsed;
            return result;
        }

        private static double Last(Result r, string key) => r[key].Samples.Count > 0 ? r[key].Samples[^1] : double.NaN;

        /// <summary>The goal line: the tracer's extra cost per module call (default options) against 500 ns.</summary>
        internal static GoalRow GoalOf(Result r)
        {
            double t = r.PerCall(TracerCase);
            return Goals.Tracer.Row($"{t:0} ns", t <= GoalNs);
        }

        /// <summary>Section 6 of docs/benchmarks.md (or the console report).</summary>
        public static string Markdown(Result r, bool heading)
        {
            var inv = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            if (heading) sb.AppendLine($"## {Title}").AppendLine();
            sb.AppendLine(string.Create(inv, $"Tiny MLP (9 module calls per forward), 1×8, no grad, one thread. {r.Rounds} rounds, alternating: in each, every C# case (declared order, reversed on odd rounds) times {r.Number:N0} forwards after 200 warm-up forwards") +
                (r.TorchVersion is null ? "" : string.Create(inv, $", then `{PyTorchResult.Python} {PyTorchResult.Script} --serve-profiler` — a child process of this run, started once — times {r.PythonNumber:N0} forwards of the same model plain, under `torch.profiler.profile(with_stack=True)` and under `profile()`")) +
                string.Create(inv, $". Per module call = median over rounds of (case − untraced) / 9, each difference within one round (PyTorch's cases against PyTorch's untraced forward). Load average {r.LoadBefore} before, {r.LoadAfter} after; {r.Elapsed.TotalSeconds:0} s. Command: `dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --tracing-paired`."));
            sb.AppendLine();
            sb.AppendLine("| Case | Median per forward | Extra per module call | × tracer's extra |").AppendLine("|---|---:|---:|---:|");
            double tracer = r.PerCall("tracer");
            foreach (var c in r.Cases.Where(c => c.Samples.Count > 0))
            {
                bool baseline = c.Key is "off" or "py.plain";
                double per = baseline ? 0 : r.PerCall(c.Key);
                string times = baseline || c.Key == "tracer" ? "" : string.Create(inv, $"{per / tracer:0.0}×");
                sb.AppendLine(string.Create(inv, $"| {(c.Python ? $"PyTorch {r.TorchVersion}: " : "")}{c.Name} | {c.Median / 1000:0.00} µs | {(baseline ? "" : $"{per:+#,0;−#,0} ns")} | {times} |"));
            }
            sb.AppendLine();
            var goal = GoalOf(r);
            sb.AppendLine($"**Goal:** {goal.What} {goal.Target}: {goal.Measured}, {(goal.State == GoalState.Met ? "met" : $"**missed** by {r.PerCall(TracerCase) - GoalNs:0} ns")}.");
            if (r.PythonError is not null) sb.AppendLine().AppendLine($"PyTorch's rounds did not run: {r.PythonError}.");
            else if (r.Has("py.profiler with_stack"))
            {
                double ws = r.PerCall("py.profiler with_stack"), ops = r.PerCall("py.profiler ops only");
                sb.AppendLine().AppendLine(string.Create(inv, $"torch.profiler with module events costs {ws / tracer:0.0}× the tracer's extra per module call ({ops / tracer:0.0}× with ops only); TorchHooks' untraced forward takes {r["off"].Median / r["py.plain"].Median:0.00}× PyTorch's. The call-path-only row is the part of every traced case that is the call path itself (a frame per call instead of the fast path), not the recording."));
            }
            return sb.ToString();
        }

        /// <summary>Section 6 of docs/benchmarks.md and its goal row, for <see cref="Report.Render"/>.</summary>
        internal static PairedSection Section(Result r) => new(Title, Markdown(r, heading: false), new[] { GoalOf(r) });

        /// <summary>benchmarks/pytorch_hook_cost.py --serve-profiler (or another --serve-* mode) as a child process: one round per request.</summary>
        internal sealed class ProfilerProcess : IDisposable
        {
            private readonly Process _process;
            public string TorchVersion = "?";
            public int Number;
            public string? Error;

            private ProfilerProcess(Process process) => _process = process;

            public static ProfilerProcess? Start(string root, int number, out string? error, string mode = "--serve-profiler")
            {
                error = null;
                if (!File.Exists(PyTorchResult.Python)) { error = $"{PyTorchResult.Python} not found"; return null; }
                var psi = new ProcessStartInfo(PyTorchResult.Python)
                {
                    WorkingDirectory = root, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
                };
                psi.ArgumentList.Add(PyTorchResult.Script);
                psi.ArgumentList.Add(mode);
                psi.ArgumentList.Add("--number");
                psi.ArgumentList.Add(number.ToString(CultureInfo.InvariantCulture));
                var p = new ProfilerProcess(Process.Start(psi)!);
                p._process.ErrorDataReceived += (_, e) => { if (e.Data is { Length: > 0 } line) p.Error = line; };
                p._process.BeginErrorReadLine();
                var ready = p.ReadLine("READY ");
                if (ready is null) { error = p.Error ?? "the script did not start"; p.Dispose(); return null; }
                var json = JsonDocument.Parse(ready).RootElement;
                p.TorchVersion = json.GetProperty("torch").GetString() ?? "?";
                p.Number = json.GetProperty("number").GetInt32();
                return p;
            }

            /// <summary>One round: the script's answer (a JSON object), or null if the script failed.</summary>
            public JsonElement? RoundJson()
            {
                try
                {
                    _process.StandardInput.WriteLine("round");
                    _process.StandardInput.Flush();
                }
                catch (IOException e) { Error = e.Message; return null; }
                var line = ReadLine("ROUND ");
                return line is null ? null : JsonDocument.Parse(line).RootElement.Clone();
            }

            /// <summary>One profiler round: ns per forward per case, or null if the script failed.</summary>
            public Dictionary<string, double>? Round()
            {
                if (RoundJson() is not { } json) return null;
                var sample = new Dictionary<string, double>();
                foreach (var p in json.EnumerateObject()) sample[p.Name] = p.Value.GetDouble();
                return sample;
            }

            private string? ReadLine(string prefix)
            {
                var task = _process.StandardOutput.ReadLineAsync();
                if (!task.Wait(TimeSpan.FromMinutes(2))) { Error = "timed out after 2 minutes"; return null; }
                var line = task.Result;
                return line is not null && line.StartsWith(prefix, StringComparison.Ordinal) ? line.Substring(prefix.Length) : null;
            }

            public void Dispose()
            {
                try
                {
                    if (!_process.HasExited)
                    {
                        _process.StandardInput.WriteLine("quit");
                        _process.StandardInput.Close();
                        if (!_process.WaitForExit(10_000)) _process.Kill();
                    }
                }
                catch (Exception e) when (e is IOException or InvalidOperationException) { }
                _process.Dispose();
            }
        }
    }
}
