using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--checkpoint-bench [--rounds N] [--steps N] [--batch N] [--threads N] [--malloc-mmap]</c>: activation checkpointing (issue 19). A training
    /// step (forward + backward + Adam) of a 24-block residual MLP, blocks grouped in √24 ≈ 5 segments, with a batch
    /// large enough that activations dominate, in three configurations: nothing checkpointed, every block
    /// checkpointed, each of the 5 segments checkpointed. Each configuration runs in its own child process (rounds
    /// alternate the order), which reports its peak RSS (VmHWM in /proc/self/status) after building the model, the
    /// optimizer and the data and running one batch-1 step (parameters, gradients, Adam state: the baseline), and again
    /// after the measured steps; activation memory = the difference. Step time, wall-clock and the process's CPU time
    /// (user + system: less sensitive to other processes on a shared machine): median over the child's steps, then the
    /// median over rounds; ratios against nothing checkpointed. Then, in this process: per-call time of a small model
    /// wrapped with nothing checkpointed against the bare model (the concern inactive: nothing added).
    /// <c>--threads N</c>: libtorch intra-op threads in the children (default: libtorch's). <c>--malloc-mmap</c>: the children
    /// run with glibc's static mmap threshold, so freed tensors go back to the OS and RSS follows live tensors (with the
    /// default dynamic threshold, glibc keeps freed blocks of up to 32 MB in its heap, and the peak includes them).
    /// Prints markdown rows, the load average and the CPU flags.
    /// </summary>
    internal static class CheckpointBench
    {
        private const int Blocks = 24, Segments = 5, Width = 128, Hidden = 512;
        private static readonly string[] Configs = { "none", "every-block", "sqrt-segments" };

        /// <summary>The section's heading in docs/benchmarks.md.</summary>
        public const string Title = "8. Activation checkpointing: training step memory and time (child process per configuration)";

        public const string NoneCase = "none", EveryBlockCase = "every-block", SegmentsCase = "sqrt-segments", NothingCase = "nothing-checkpointed";

        /// <summary>Every case this runner measures (for the goals' checks).</summary>
        internal static IReadOnlyCollection<string> CaseKeys { get; } = new[] { NoneCase, EveryBlockCase, SegmentsCase, NothingCase };

        /// <summary>Goals (issue 19): activation memory at least this much lower with every block checkpointed; step time at most this ratio.</summary>
        public const double GoalMemoryCut = 0.5, GoalTimeRatio = 1.4;

        /// <summary>One run: per configuration, each child's (wall ms, CPU ms, baseline MB, peak MB); the nothing-checkpointed probe.</summary>
        public sealed class Result
        {
            public readonly Dictionary<string, List<(double Ms, double CpuMs, double BaseMb, double PeakMb, double FwdMs, double BwdMs)>> Children = Configs.ToDictionary(c => c, _ => new List<(double, double, double, double, double, double)>());
            public int Rounds, Steps, Batch, Threads;
            public bool MallocMmap;
            public string LoadBefore = "", LoadAfter = "", CpuFlags = "";
            public TimeSpan Elapsed;
            public bool NothingInactive;
            public int NothingModules;
            public double NothingBareNs, NothingWrappedNs, NothingExtraNs;

            public double Ms(string c) => Stat.Median(Children[c].Select(x => x.Ms));
            public double Cpu(string c) => Stat.Median(Children[c].Select(x => x.CpuMs));
            public double Fwd(string c) => Stat.Median(Children[c].Select(x => x.FwdMs));
            public double Bwd(string c) => Stat.Median(Children[c].Select(x => x.BwdMs));
            public double Act(string c) => Stat.Median(Children[c].Select(x => x.PeakMb - x.BaseMb));
            public double MemCut(string c) => 1 - Act(c) / Act(NoneCase);
        }

        public static int Run(string[] args)
        {
            int Arg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault() is var v && v > 0 ? v : fallback;
            int steps = Arg("--steps", 5), batch = Arg("--batch", 2048), rounds = Arg("--rounds", 3), threads = Arg("--threads", 0);
            bool mmap = args.Contains("--malloc-mmap");
            var child = args.SkipWhile(a => a != "--child").Skip(1).FirstOrDefault();
            if (child is not null) return Child(child, steps, batch, threads);
            var r = Measure(rounds, steps, batch, threads, mmap, log: true);
            Console.WriteLine();
            Console.WriteLine(Markdown(r));
            return 0;
        }

        /// <summary>Runs the children (rounds alternate the configurations' order), then the nothing-checkpointed probe in this process.</summary>
        public static Result Measure(int rounds, int steps, int batch, int threads, bool mmap, bool log)
        {
            var sw = Stopwatch.StartNew();
            var r = new Result { Rounds = rounds, Steps = steps, Batch = batch, Threads = threads, MallocMmap = mmap, LoadBefore = Machine.LoadAverage(), CpuFlags = CpuFlags() };
            if (log)
            {
                Console.WriteLine($"# Activation checkpointing: {Blocks}-block residual MLP (width {Width}, hidden {Hidden}, batch {batch}), {Segments} segments, Adam; {steps} steps per child, {rounds} rounds; " +
                    $"libtorch threads: {(threads > 0 ? threads.ToString() : "default")}; glibc malloc: {(mmap ? "MALLOC_MMAP_THRESHOLD_=131072 (static: freed tensors of 128 KB and more go back to the OS)" : "default (dynamic mmap threshold)")}");
                Console.WriteLine($"load average before: {r.LoadBefore}; CPU flags: {r.CpuFlags}; {Environment.ProcessorCount} logical cores");
            }
            for (int round = 0; round < rounds; round++)
            {
                var order = round % 2 == 0 ? Configs : Configs.Reverse().ToArray();
                foreach (var config in order)
                {
                    var line = RunChild(config, steps, batch, threads, mmap);
                    var f = line.Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                    r.Children[config].Add((f[0], f[1], f[2], f[3], f[4], f[5]));
                    if (log) Console.WriteLine($"  round {round + 1} {config,-14} step {f[0],8:0.0} ms (CPU {f[1],8:0.0} ms)  baseline {f[2],7:0.0} MB  peak {f[3],7:0.0} MB  activations {f[3] - f[2],7:0.0} MB");
                }
            }
            NothingCheckpointed(r);
            r.LoadAfter = Machine.LoadAverage();
            r.Elapsed = sw.Elapsed;
            if (log) Console.WriteLine($"load average after: {r.LoadAfter}");
            return r;
        }

        /// <summary>The goal rows: activation memory and step time with every block checkpointed, the √n segments (reported), nothing checkpointed.</summary>
        internal static IReadOnlyList<GoalRow> GoalRows(Result r)
        {
            var inv = CultureInfo.InvariantCulture;
            double memCut = r.MemCut(EveryBlockCase), wall = r.Ms(EveryBlockCase) / r.Ms(NoneCase), cpu = r.Cpu(EveryBlockCase) / r.Cpu(NoneCase);
            return new[]
            {
                Goals.CheckpointMemory.Row(string.Create(inv, $"{memCut * 100:0}% lower ({r.Act(NoneCase):0} → {r.Act(EveryBlockCase):0} MB)"), memCut >= GoalMemoryCut),
                Goals.CheckpointTime.Row(string.Create(inv, $"{wall:0.00}× ({r.Ms(NoneCase):0} → {r.Ms(EveryBlockCase):0} ms)"), wall <= GoalTimeRatio),
                Goals.CheckpointCpuTime.Row(string.Create(inv, $"{cpu:0.00}× ({r.Cpu(NoneCase):0} → {r.Cpu(EveryBlockCase):0} ms)"), GoalState.Reported),
                Goals.CheckpointSegments.Row(string.Create(inv, $"{r.MemCut(SegmentsCase) * 100:0}% lower / {r.Ms(SegmentsCase) / r.Ms(NoneCase):0.00}× wall / {r.Cpu(SegmentsCase) / r.Cpu(NoneCase):0.00}× CPU"), GoalState.Reported),
                Goals.CheckpointNothing.Row(string.Create(inv, $"{r.NothingExtraNs:+0.0;−0.0} ns, concern {(r.NothingInactive ? "inactive" : "ACTIVE")} on all {r.NothingModules} modules"), r.NothingInactive),
            };
        }

        internal static PairedSection Section(Result r) => new(Title, Markdown(r), GoalRows(r));

        public static string Markdown(Result r)
        {
            var inv = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            sb.AppendLine(string.Create(inv, $"A training step (forward, backward, Adam) of a {Blocks}-block residual MLP (width {Width}, hidden {Hidden}, GELU; blocks in {Segments} `Sequential` segments), batch {r.Batch}, through its facade: nothing checkpointed, every block checkpointed (`Paths = segments.*.*`), each of the √{Blocks} ≈ {Segments} segments checkpointed (`Paths = segments.*`). ") +
                      string.Create(inv, $"Each configuration runs in its own child process ({r.Rounds} rounds, the order reversed on odd rounds; libtorch threads: {(r.Threads > 0 ? r.Threads.ToString(inv) : "libtorch's default")}; glibc malloc {(r.MallocMmap ? "with a static mmap threshold of 128 KB" : "as it comes")}), which reads its VmHWM after building the model, the optimizer and the data and running two batch-1 steps (parameters, gradients, Adam state: the baseline) and again after {r.Steps + 1} full steps; activation memory = the difference. ") +
                      string.Create(inv, $"Step time: median over a child's steps (the first left out), then over rounds; wall clock and the process's CPU time (user + system). Load average {r.LoadBefore} before, {r.LoadAfter} after; CPU flags: {r.CpuFlags}; {r.Elapsed.TotalSeconds:0} s. Command: `dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --checkpoint-bench --threads {r.Threads}`."));
            sb.AppendLine();
            sb.AppendLine("| Configuration | step time, wall (median) | × none | of which forward | of which backward | step CPU time (median) | × none | activation memory (median) | vs none |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var c in Configs)
                sb.AppendLine(string.Create(inv, $"| {c} | {r.Ms(c):0} ms | {r.Ms(c) / r.Ms(NoneCase):0.00}× | {r.Fwd(c):0} ms | {r.Bwd(c):0} ms | {r.Cpu(c):0} ms | {r.Cpu(c) / r.Cpu(NoneCase):0.00}× | {r.Act(c):0} MB | {(r.Act(c) / r.Act(NoneCase) - 1) * 100:+0;−0}% |"));
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"What checkpointing every block adds is in the backward: {r.Bwd(EveryBlockCase) - r.Bwd(NoneCase):0} ms, against the un-checkpointed forward's {r.Fwd(NoneCase):0} ms (the recompute is one more forward; PyTorch's reentrant checkpoint costs the same). So the step-time ratio is about (forward + step) / step for this model."));
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"Nothing checkpointed: the concern is inactive on all {r.NothingModules} modules of a wrapped tiny MLP: {r.NothingInactive} (no call-path bit, no dispatcher attached), so a module call runs TorchSharp's code only. Measured anyway, one thread, 41 paired rounds in alternating order: bare {r.NothingBareNs:0} ns, wrapped {r.NothingWrappedNs:0} ns per model call; median paired difference {r.NothingExtraNs:+0.0;−0.0} ns per module call (noise: the same code runs)."));
            sb.AppendLine();
            foreach (var g in GoalRows(r))
                sb.AppendLine(g.State == GoalState.Reported ? $"**Reported:** {g.What}: {g.Measured}." : $"**Goal:** {g.What} {g.Target}: {g.Measured}, {(g.State == GoalState.Met ? "met" : g.State == GoalState.Missed ? "**missed**" : "inconclusive")}.");
            return sb.ToString();
        }

        /// <summary>The residual MLP: segments.{s}.{i} are the blocks (a Sequential of blocks per segment), then head.</summary>
        private sealed class Block : nn.Module<Tensor, Tensor>
        {
            private readonly Linear fc1 = nn.Linear(Width, Hidden);
            private readonly GELU act = nn.GELU();
            private readonly Linear fc2 = nn.Linear(Hidden, Width);
            public Block() : base("Block") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                using var h = fc1.call(x);
                using var a = act.call(h);
                using var y = fc2.call(a);
                return x + y;
            }
        }

        private static Sequential Model()
        {
            var segments = new List<(string, nn.Module<Tensor, Tensor>)>();
            int per = (Blocks + Segments - 1) / Segments, made = 0;
            for (int s = 0; made < Blocks; s++)
            {
                var blocks = new List<(string, nn.Module<Tensor, Tensor>)>();
                for (int i = 0; i < per && made < Blocks; i++, made++) blocks.Add((i.ToString(), new Block()));
                segments.Add((s.ToString(), nn.Sequential(blocks)));
            }
            return nn.Sequential(("segments", nn.Sequential(segments)), ("head", nn.Linear(Width, 1)));
        }

        private static int Child(string config, int steps, int batch, int threads)
        {
            if (threads > 0) set_num_threads(threads);
            manual_seed(1);
            var model = Model();
            var m = model.WithHooks();
            using var policy = config switch
            {
                "none" => null,
                "every-block" => m.Checkpoint(new CheckpointOptions { Paths = new[] { "segments.*.*" } }),
                "sqrt-segments" => m.Checkpoint(new CheckpointOptions { Paths = new[] { "segments.*" } }),
                _ => throw new ArgumentException($"unknown configuration '{config}'; one of {string.Join(", ", Configs)}", nameof(config)),
            };
            var opt = optim.Adam(model.parameters(), 1e-4);
            using var x = randn(batch, Width);
            using var t = randn(batch, 1);
            using var x1 = randn(1, Width);
            using var t1 = randn(1, 1);
            var self = Process.GetCurrentProcess();
            double cpu = 0, fwd = 0, bwd = 0;
            double Step(Tensor input, Tensor target)
            {
                using var d = NewDisposeScope();
                self.Refresh();
                var c0 = self.TotalProcessorTime;
                long t0 = Stopwatch.GetTimestamp();
                opt.zero_grad();
                var loss = nn.functional.mse_loss(m.call(input), target);
                long tf = Stopwatch.GetTimestamp();
                if (s_memTrace) Console.Error.WriteLine($"after forward: RSS {VmMb("VmRSS:"):0.0} MB, HWM {VmHwmMb():0.0} MB");
                loss.Backward();
                long tb = Stopwatch.GetTimestamp();
                if (s_memTrace) Console.Error.WriteLine($"after backward: RSS {VmMb("VmRSS:"):0.0} MB, HWM {VmHwmMb():0.0} MB");
                opt.step();
                long t1 = Stopwatch.GetTimestamp();
                self.Refresh();
                cpu = (self.TotalProcessorTime - c0).TotalMilliseconds;
                fwd = (tf - t0) * 1000.0 / Stopwatch.Frequency;
                bwd = (tb - tf) * 1000.0 / Stopwatch.Frequency;
                return (t1 - t0) * 1000.0 / Stopwatch.Frequency;
            }
            Step(x1, t1);   // gradients and Adam state exist from here: the baseline
            Step(x1, t1);
            double baseline = VmHwmMb();
            var times = new List<double>();
            var cpus = new List<double>();
            var fwds = new List<double>();
            var bwds = new List<double>();
            for (int i = 0; i < steps + 1; i++) { times.Add(Step(x, t)); cpus.Add(cpu); fwds.Add(fwd); bwds.Add(bwd); }
            double peak = VmHwmMb();
            Console.WriteLine(FormattableString.Invariant($"{Stat.Median(times.Skip(1)):0.000} {Stat.Median(cpus.Skip(1)):0.000} {baseline:0.0} {peak:0.0} {Stat.Median(fwds.Skip(1)):0.000} {Stat.Median(bwds.Skip(1)):0.000}"));
            return 0;
        }

        private static string RunChild(string config, int steps, int batch, int threads, bool mmap)
        {
            var self = Environment.ProcessPath!;
            var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
            if (mmap) psi.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(CheckpointBench).Assembly.Location);
            foreach (var a in new[] { "--checkpoint-bench", "--child", config, "--steps", steps.ToString(), "--batch", batch.ToString(), "--threads", threads.ToString() }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"child '{config}' exited with {p.ExitCode}: {output}");
            return output.Trim().Split('\n').Last().Trim();
        }

        private static readonly bool s_memTrace = Environment.GetEnvironmentVariable("CHECKPOINT_BENCH_MEMTRACE") == "1";

        private static double VmHwmMb() => VmMb("VmHWM:");

        private static double VmMb(string field)
        {
            var line = File.ReadAllLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
            return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        }

        private static string CpuFlags()
        {
            try
            {
                var flags = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("flags", StringComparison.Ordinal)).Split(' ');
                return string.Join(" ", new[] { "amx_bf16", "avx2", "avx512_bf16" }.Where(flags.Contains));
            }
            catch (IOException) { return "?"; }
        }

        /// <summary>
        /// Nothing checkpointed: the concern's bit is clear on every module and the dispatchers are not attached, so a
        /// module call never enters the call path; measured: a small MLP's call, bare vs wrapped, alternating rounds, one thread.
        /// </summary>
        private static void NothingCheckpointed(Result r)
        {
            int threads = get_num_threads();
            set_num_threads(1);
            try
            {
                var bare = Models.TinyMlp();
                var wrappedModel = Models.TinyMlp();
                var wrapped = wrappedModel.WithHooks();
                r.NothingInactive = wrapped.HookPoints().All(n => n.ActiveConcerns == 0 && !n.IsAttached && n.Checkpointing is null);
                r.NothingModules = wrapped.HookPoints().Count;
                using var x = randn(1, 8);
                double Time(nn.Module<Tensor, Tensor> model)
                {
                    const int n = 2_000;
                    long t0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < n; i++) { using var y = model.call(x); }
                    return (Stopwatch.GetTimestamp() - t0) * 1e9 / Stopwatch.Frequency / n;
                }
                var a = new List<double>(); var b = new List<double>(); var diff = new List<double>();
                for (int i = 0; i < 5; i++) { Time(bare); Time(wrappedModel); }
                for (int round = 0; round < 41; round++)   // paired rounds in alternating order: the difference of each pair, then the median
                {
                    double ta, tb;
                    if (round % 2 == 0) { ta = Time(bare); tb = Time(wrappedModel); }
                    else { tb = Time(wrappedModel); ta = Time(bare); }
                    a.Add(ta); b.Add(tb); diff.Add(tb - ta);
                }
                r.NothingBareNs = Stat.Median(a);
                r.NothingWrappedNs = Stat.Median(b);
                r.NothingExtraNs = Stat.Median(diff) / r.NothingModules;
            }
            finally { set_num_threads(threads); }
        }
    }
}
