using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.Json;
using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Perfolizer.Horology;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Order;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    internal enum JobKind { Micro, OneShot, Heavy }

    /// <summary>One benchmark class and how it is run and reported.</summary>
    internal sealed record Suite(Type Type, string Title, JobKind Kind, string PerLabel = "module call")
    {
        /// <summary>The name <c>--suites</c> takes: the class name without "Benchmarks".</summary>
        public string Key => Type.Name.EndsWith("Benchmarks", StringComparison.Ordinal) ? Type.Name[..^"Benchmarks".Length] : Type.Name;
    }

    /// <summary>A section measured by a paired runner (its own rounds, alternating with PyTorch's), with its goal rows.</summary>
    internal sealed record PairedSection(string Title, string Markdown, IReadOnlyList<GoalRow> Goals);

    /// <summary>
    /// One benchmark case over all rounds of its suite: per round, BenchmarkDotNet's median (ns per invocation)
    /// and allocated bytes per invocation.
    /// </summary>
    internal sealed class Row
    {
        public string Method = "";
        public string Name = "";
        public bool Baseline;
        public bool Failed;
        public int? Calls;
        public string? HookKind;
        public int HookCount;
        public readonly List<double> M = new();
        public readonly List<long?> A = new();
        public double Median => Stat.Median(M);
        public double Lo => M.Min();
        public double Hi => M.Max();
        public long? Alloc => A.All(a => a is null) ? null : (long)Math.Round(Stat.Median(A.Where(a => a != null).Select(a => (double)a!.Value)));
    }

    internal sealed class SuiteRun
    {
        public Suite Suite = null!;
        public List<Row> Rows = new();
        public int Rounds;
        public string LoadBefore = "";
        public TimeSpan Elapsed;
        public string JobText = "";
        public Row Base => Rows.First(r => r.Baseline);
        public Row this[string method] => Rows.First(r => r.Method == method);
        public bool Ok => Rows.Count > 0 && Rows.All(r => !r.Failed && r.M.Count == Rounds);

        /// <summary>f(case, other) computed within each round (same time window), then the median over rounds.</summary>
        public double Paired(string method, string other, Func<double, double, double> f) => Stat.Median(PairedValues(method, other, f));

        public List<double> PairedValues(string method, string other, Func<double, double, double> f)
        {
            var a = this[method].M; var b = this[other].M;
            return Enumerable.Range(0, Math.Min(a.Count, b.Count)).Select(i => f(a[i], b[i])).ToList();
        }

        /// <summary>Median over rounds of case / baseline.</summary>
        public double Ratio(string method) => Paired(method, Base.Method, (x, b) => x / b);

        /// <summary>Median over rounds of (case − baseline) / calls.</summary>
        public double Delta(string method, int calls) => Paired(method, Base.Method, (x, b) => (x - b) / calls);
    }

    internal static class Stat
    {
        public static double Median(IEnumerable<double> values)
        {
            var v = values.OrderBy(x => x).ToArray();
            if (v.Length == 0) return double.NaN;
            return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }
    }

    /// <summary>Declared order, or its reverse: consecutive rounds alternate, so a slow drift of the machine's speed hits every case alike.</summary>
    internal sealed class AlternatingOrderer : DefaultOrderer
    {
        private readonly bool _reverse;

        public AlternatingOrderer(bool reverse) : base(SummaryOrderPolicy.Declared) { _reverse = reverse; }

        public override IEnumerable<BenchmarkCase> GetExecutionOrder(ImmutableArray<BenchmarkCase> benchmarkCases, IEnumerable<BenchmarkLogicalGroupRule>? order = null)
        {
            var declared = base.GetExecutionOrder(benchmarkCases, order).ToList();
            if (_reverse) declared.Reverse();
            return declared;
        }
    }

    /// <summary>Runs every suite, then renders docs/benchmarks.md from the summaries.</summary>
    internal static class DocsRun
    {
        public const string Command = "dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --write-docs";

        public static readonly Suite[] Suites =
        {
            new(typeof(DispatchBenchmarks), "1. Facade overhead on a dispatch-bound model (tiny MLP)", JobKind.Micro),
            new(typeof(ChainDispatchBenchmarks), "1b. Facade overhead on the call path alone (managed pass-through chain)", JobKind.Micro),
            new(typeof(ComputeBenchmarks), "2. Facade overhead on a compute-bound model", JobKind.Micro),
            new(typeof(MlpHookCostBenchmarks), "3. Cost per registered no-op hook (tiny MLP; PyTorch comparison)", JobKind.Micro),
            new(typeof(ChainHookCostBenchmarks), "3b. Cost per registered no-op hook on the call path alone (managed chain)", JobKind.Micro),
            new(typeof(WrapBenchmarks), "4. Wrapping a 201-module tree (one-time cost)", JobKind.OneShot, "module"),
            new(typeof(AmpForwardBenchmarks), "5a. bf16 autocast vs float32: matmul-heavy forward", JobKind.Heavy),
            new(typeof(AmpTrainingBenchmarks), "5b. bf16 autocast vs float32: training step", JobKind.Heavy),
            new(typeof(AutocastScopeBenchmarks), "5c. The autocast region's own cost", JobKind.Micro),
            new(typeof(ResNetBenchmarks), "5d. bf16 inference per call on a real model (TorchVision resnet18)", JobKind.Heavy, "call"),
        };

        /// <summary>The paired runners the docs command runs after the BenchmarkDotNet suites (their cases: <c>CaseKeys</c>).</summary>
        public static readonly Type[] PairedSuites = { typeof(TracingPaired), typeof(BackwardPaired), typeof(OffloadProbe) };

        public static int Run(string[] args)
        {
            var total = Stopwatch.StartNew();
            bool write = args.Contains("--write-docs");
            bool dry = args.Contains("--dry");
            bool crossCheck = !args.Contains("--no-crosscheck");
            bool python = !args.Contains("--no-python");
            int? roundsOverride = int.TryParse(Arg(args, "--rounds"), out var ro) && ro > 0 ? ro : null;
            var only = Arg(args, "--suites")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var root = FindRepoRoot();
            var output = Arg(args, "--out") ?? Path.Combine(root, "docs", "benchmarks.md");
            var artifacts = Path.Combine(AppContext.BaseDirectory, "BenchmarkDotNet.Artifacts");

            var machine = Machine.Collect(root);
            var loadStart = Machine.LoadAverage();
            var sanity = SanityChecks();
            Console.WriteLine("Sanity checks passed:\n  " + string.Join("\n  ", sanity));

            var runs = new List<SuiteRun>();
            foreach (var suite in Suites.Where(s => only is null || only.Contains(s.Key, StringComparer.OrdinalIgnoreCase)))
            {
                int rounds = dry ? 1 : roundsOverride ?? Rounds(suite.Kind);
                var run = new SuiteRun { Suite = suite, Rounds = rounds, LoadBefore = Machine.LoadAverage(), JobText = Describe(suite.Kind, dry, rounds) };
                var sw = Stopwatch.StartNew();
                if (!dry)
                {
                    var warm = suite.Kind == JobKind.Micro
                        ? Prewarm.Run(suite.Type, TimeSpan.FromMilliseconds(600), int.MaxValue)
                        : Prewarm.Run(suite.Type, TimeSpan.FromSeconds(2), 5);
                    Console.WriteLine($"// ===== {suite.Key}: pre-warmed in {warm.TotalSeconds:0.0} s =====");
                }
                for (int round = 0; round < rounds; round++)
                {
                    Console.WriteLine($"// ===== {suite.Key}: round {round + 1} of {rounds} =====");
                    var summary = BenchmarkRunner.Run(suite.Type, MakeConfig(MakeJob(suite.Kind, dry, inProcess: true), artifacts, reverse: round % 2 == 1));
                    Collect(run.Rows, summary);
                }
                run.Elapsed = sw.Elapsed;
                runs.Add(run);
            }

            var outOfProcess = new List<SuiteRun>();
            var crossSuites = Suites.Where(s => s.Type == typeof(DispatchBenchmarks) || s.Type == typeof(ChainDispatchBenchmarks)
                                                && (only is null || only.Contains(s.Key, StringComparer.OrdinalIgnoreCase))).ToArray();
            if (crossCheck && crossSuites.Length > 0)
            {
                // One out-of-process job for both suites: BenchmarkDotNet generates and builds one project for it.
                var load = Machine.LoadAverage();
                var sw = Stopwatch.StartNew();
                var summaries = BenchmarkRunner.Run(crossSuites.Select(s => s.Type).ToArray(),
                    MakeConfig(CrossCheckJob(dry), artifacts, reverse: false));
                foreach (var suite in crossSuites)
                {
                    var run = new SuiteRun { Suite = suite, Rounds = 1, LoadBefore = load, JobText = CrossCheckText, Elapsed = sw.Elapsed };
                    var summary = summaries.FirstOrDefault(x => x.BenchmarksCases.Any(c => c.Descriptor.Type == suite.Type));
                    if (summary != null) Collect(run.Rows, summary);
                    outOfProcess.Add(run);
                }
            }

            PyTorchResult? py = null;
            if (python) py = PyTorchResult.Run(root);

            // Suite 6, tracing (TracingPaired.cs): its own paired rounds, alternating with the PyTorch script's profiler rounds.
            TracingPaired.Result? tracing = null;
            if (only is null || only.Contains("Tracing", StringComparer.OrdinalIgnoreCase))
            {
                Console.WriteLine("// ===== Tracing: paired rounds with torch.profiler =====");
                tracing = TracingPaired.Measure(root, python, dry ? 2 : roundsOverride ?? 31, dry ? 200 : 2000, log: true);
            }

            var loadEnd = Machine.LoadAverage();
            total.Stop();
            // Suite 7, backward hooks (BackwardPaired.cs): likewise, alternating with the PyTorch script's backward rounds.
            BackwardPaired.Result? backward = null;
            if (only is null || only.Contains("Backward", StringComparer.OrdinalIgnoreCase))
            {
                Console.WriteLine("// ===== Backward: paired rounds with PyTorch =====");
                backward = BackwardPaired.Measure(root, python, dry ? 2 : roundsOverride ?? 21, dry ? 20 : 200, log: true);
            }

            // Suite 9, models bigger than memory (OffloadProbe.cs): one child process per configuration, alternating rounds.
            OffloadProbe.Result? offload = null;
            if (only is null || only.Contains("Offload", StringComparer.OrdinalIgnoreCase))
            {
                Console.WriteLine("// ===== Offload: child processes per configuration =====");
                offload = OffloadProbe.Measure(root, dry ? 1 : roundsOverride ?? 2, 24, 2048, dry ? 2 : 5, log: true, groups: dry ? 3 : 21);
            }

            var paired = new List<PairedSection>();
            if (tracing is not null) paired.Add(TracingPaired.Section(tracing));   // section 6 and its goal row
            if (backward is not null) paired.Add(BackwardPaired.Section(backward));   // section 7 and its goal rows
            if (offload is not null) paired.Add(OffloadProbe.Section(offload));   // section 9 and its goal rows
            var md = Report.Render(machine, runs, outOfProcess, py, sanity, dry, loadStart, loadEnd, total.Elapsed, paired);
            if (write)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(output)!);
                File.WriteAllText(output, md);
                Console.WriteLine($"Wrote {output} (run took {total.Elapsed:mm\\:ss}).");
            }
            else
            {
                Console.WriteLine(md);
            }
            return runs.All(r => r.Ok) && outOfProcess.All(r => r.Ok) ? 0 : 1;
        }

        // ---- jobs and config ----

        /// <summary>Rounds per suite: each round is a complete, short BenchmarkDotNet run of the suite.</summary>
        public static int Rounds(JobKind kind) => kind == JobKind.Micro ? 9 : 3;

        public static Job MakeJob(JobKind kind, bool dry, bool inProcess)
        {
            Job job = kind switch
            {
                JobKind.Micro => Job.Default.WithWarmupCount(dry ? 1 : 3).WithIterationCount(dry ? 3 : 9)
                    .WithIterationTime(TimeInterval.FromMilliseconds(dry ? 10 : 15)),
                JobKind.OneShot => Job.Default.WithInvocationCount(1).WithUnrollFactor(1)
                    .WithWarmupCount(dry ? 1 : 3).WithIterationCount(dry ? 3 : 15),
                _ => Job.Default.WithInvocationCount(1).WithUnrollFactor(1)
                    .WithWarmupCount(dry ? 1 : 1).WithIterationCount(dry ? 2 : 5),
            };
            job = job.WithLaunchCount(1).WithEvaluateOverhead(false);
            job = inProcess
                ? job.WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(10), logOutput: true))
                : job;   // BenchmarkDotNet's default toolchain: a generated project, built and run as a child process
            return job.WithId((inProcess ? "InProcess-" : "OutOfProcess-") + kind);
        }

        /// <summary>
        /// The out-of-process cross-check: no pre-warm is possible in BenchmarkDotNet's child processes, so tiered
        /// compilation must finish inside the job's own warm-up: longer iterations and more warm-up than the micro job.
        /// </summary>
        public static Job CrossCheckJob(bool dry) =>
            Job.Default.WithWarmupCount(dry ? 1 : 6).WithIterationCount(dry ? 3 : 11)
                .WithIterationTime(TimeInterval.FromMilliseconds(dry ? 10 : 100))
                .WithLaunchCount(1).WithEvaluateOverhead(false).WithId("OutOfProcess-CrossCheck");

        public const string CrossCheckText = "1 round × (6 warm-up + 11 measured iterations of ~100 ms), default toolchain";

        public static string Describe(JobKind kind, bool dry, int rounds) => (kind, dry) switch
        {
            (_, true) => "**dry run** (1 round, 1 warm-up, 2–3 iterations: numbers are not meaningful)",
            (JobKind.Micro, _) => $"{rounds} rounds × (3 warm-up + 9 measured iterations of ~15 ms; BenchmarkDotNet's pilot picks the invocations per iteration)",
            (JobKind.OneShot, _) => $"{rounds} rounds × (3 warm-up + 15 measured iterations of exactly one invocation, each on a freshly built model)",
            _ => $"{rounds} rounds × (1 warm-up + 5 measured iterations of one invocation each)",
        };

        private static IConfig MakeConfig(Job job, string artifacts, bool reverse) =>
            ManualConfig.Create(DefaultConfig.Instance)
                .AddJob(job)
                .AddColumn(BenchmarkDotNet.Columns.StatisticColumn.Median, BenchmarkDotNet.Columns.StatisticColumn.Q1, BenchmarkDotNet.Columns.StatisticColumn.Q3)
                .WithOrderer(new AlternatingOrderer(reverse))
                .WithArtifactsPath(artifacts);

        /// <summary>Adds one round's numbers to the rows (creating them on the first round).</summary>
        private static void Collect(List<Row> rows, Summary summary)
        {
            foreach (var bc in summary.BenchmarksCases)
            {
                var method = bc.Descriptor.WorkloadMethod;
                var row = rows.FirstOrDefault(r => r.Method == method.Name);
                if (row is null)
                {
                    row = new Row
                    {
                        Method = method.Name,
                        Name = method.GetCustomAttribute<BenchmarkAttribute>()?.Description ?? method.Name,
                        Baseline = bc.Descriptor.Baseline,
                        Calls = method.GetCustomAttribute<ModuleCallsAttribute>()?.Calls,
                        HookKind = method.GetCustomAttribute<HooksPerCallAttribute>()?.Kind,
                        HookCount = method.GetCustomAttribute<HooksPerCallAttribute>()?.Count ?? 0,
                    };
                    // Keep the declared order whatever the execution order was.
                    rows.Add(row);
                }
                var report = summary[bc];
                var st = report?.ResultStatistics;
                if (report is null || st is null || !report.Success) { row.Failed = true; continue; }
                row.M.Add(st.Median);
                row.A.Add(report.GcStats.GetBytesAllocatedPerOperation(bc));
            }
            var declared = summary.BenchmarksCases.Select(c => c.Descriptor.WorkloadMethod)
                .OrderBy(m => m.MetadataToken).Select(m => m.Name).ToList();
            rows.Sort((a, b) => declared.IndexOf(a.Method).CompareTo(declared.IndexOf(b.Method)));
        }

        // ---- sanity ----

        /// <summary>Checks that what the suites measure is what they claim to measure; throws otherwise.</summary>
        private static List<string> SanityChecks()
        {
            var done = new List<string>();
            void Check(bool ok, string what)
            {
                if (!ok) throw new InvalidOperationException("Benchmark sanity check failed: " + what);
                done.Add(what);
            }
            using var scope = torch.NewDisposeScope();
            using (var tiny = Models.TinyMlp()) Check(Models.CountModules(tiny) == Models.TinyMlpCalls, $"the tiny MLP has {Models.TinyMlpCalls} modules");
            using (var wide = Models.WideMlp()) Check(Models.CountModules(wide) == Models.WideMlpCalls, $"the wide MLP has {Models.WideMlpCalls} modules");
            using (var chain = Models.ManagedChain()) Check(Models.CountModules(chain) == Models.ManagedChainCalls, $"the managed chain has {Models.ManagedChainCalls} modules");
            using (var chain = Models.ManagedChain())
            {
                var x = torch.zeros(1, 8);
                int fired = 0;
                var facade = chain.WithHooks();
                var handles = facade.Paths.Select(p => facade[p].register_forward_pre_hook((m, a) => { fired++; return null; })).ToList();
                Check(ReferenceEquals(facade.call(x), x) && fired == Models.ManagedChainCalls, $"the managed chain returns its input and makes {Models.ManagedChainCalls} hooked module calls");
                handles.ForEach(h => h.remove());
            }
            using (var deep = Models.DeepModel()) Check(Models.CountModules(deep) == Models.DeepModelModules, $"the deep model has {Models.DeepModelModules} modules");

            using (var plain = Models.TinyMlp())
            using (var wrapped = Models.TinyMlp())
            {
                var facade = wrapped.WithHooks();
                var x = torch.randn(1, 8);
                Check(plain.call(x).allclose(facade.call(x)), "the facade computes what TorchSharp's call computes (same seed, same output)");
                Check(facade.Paths.Count == Models.TinyMlpCalls, "the facade reaches every module of the tiny MLP");
                int fired = 0;
                var handles = facade.Paths.Select(p => facade[p].register_forward_hook((m, a, y) => { fired++; return null; })).ToList();
                facade.call(x);
                Check(fired == Models.TinyMlpCalls, $"a local forward hook on every module fires {Models.TinyMlpCalls} times per forward");
                handles.ForEach(h => h.remove());
                fired = 0;
                using (ModuleHooks.register_module_forward_pre_hook((m, a) => { fired++; return null; }))
                    facade.call(x);
                Check(fired == Models.TinyMlpCalls, $"a global pre-hook fires {Models.TinyMlpCalls} times per forward");
                fired = 0;
                facade.call(x);
                Check(fired == 0, "removed hooks no longer fire");
            }

            using (var lin = torch.nn.Linear(16, 16))
            {
                var x = torch.randn(4, 16);
                using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
                    Check(lin.call(x).dtype == ScalarType.BFloat16, "under Amp.autocast(CPU, BFloat16) a Linear runs in bfloat16");
                Check(lin.call(x).dtype == ScalarType.Float32, "after the region a Linear runs in float32 again");
            }
            return done;
        }

        /// <summary>
        /// The command-line entry of a paired runner (<c>--tracing-paired</c>, <c>--backward-paired</c>): its rounds
        /// (<c>--rounds N</c>, else <paramref name="defaultRounds"/>), PyTorch's side unless <c>--no-python</c>, and its
        /// markdown printed.
        /// </summary>
        internal static int RunPaired<TResult>(string[] args, int defaultRounds, int number,
            Func<string, bool, int, int, bool, TResult> measure, Func<TResult, string> markdown)
        {
            int rounds = int.TryParse(Arg(args, "--rounds"), out var r) && r > 0 ? r : defaultRounds;
            var result = measure(FindRepoRoot(), !args.Contains("--no-python"), rounds, number, true);
            Console.WriteLine(markdown(result));
            return 0;
        }

        internal static string? Arg(string[] args, string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }

        internal static string FindRepoRoot()
        {
            foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            {
                for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
                    if (File.Exists(Path.Combine(dir.FullName, "Wrapper.sln"))) return dir.FullName;
            }
            throw new InvalidOperationException("Could not find the repository root (the folder with Wrapper.sln). Run the command from the repository.");
        }
    }

    /// <summary>The output of benchmarks/pytorch_hook_cost.py.</summary>
    internal sealed class PyTorchResult
    {
        public const string Script = "benchmarks/pytorch_hook_cost.py";
        public const string Python = "/usr/bin/python3";
        public string Text = "";
        public string? Error;
        public JsonElement? Json;
        public TimeSpan Elapsed;

        public static PyTorchResult Run(string root)
        {
            var r = new PyTorchResult();
            var sw = Stopwatch.StartNew();
            try
            {
                if (!File.Exists(Python)) { r.Error = $"{Python} not found"; return r; }
                var psi = new ProcessStartInfo(Python, Script) { WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = Process.Start(psi)!;
                var stderr = p.StandardError.ReadToEndAsync();
                var stdout = p.StandardOutput.ReadToEnd();
                if (!p.WaitForExit(300_000)) { p.Kill(); r.Error = "timed out after 5 minutes"; return r; }
                var lines = stdout.Split('\n');
                r.Text = string.Join("\n", lines.Where(l => !l.StartsWith("JSON ", StringComparison.Ordinal))).TrimEnd();
                var json = lines.FirstOrDefault(l => l.StartsWith("JSON ", StringComparison.Ordinal));
                if (p.ExitCode != 0 || json is null) r.Error = $"exit code {p.ExitCode}: {stderr.Result.Trim()}";
                else r.Json = JsonDocument.Parse(json.Substring(5)).RootElement.Clone();
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or JsonException)
            {
                r.Error = e.Message;
            }
            finally { r.Elapsed = sw.Elapsed; }
            return r;
        }

        public double PerHook(string kind) => Json!.Value.GetProperty("kinds").GetProperty(kind).GetProperty("per_hook_ns").GetDouble();
        public double FirstHook(string kind) => Json!.Value.GetProperty("kinds").GetProperty(kind).GetProperty("first_hook_ns").GetDouble();
        public double NoHooks => Json!.Value.GetProperty("no_hooks_ns").GetDouble();
        public string Version => Json!.Value.GetProperty("torch").GetString() ?? "?";
    }
}
