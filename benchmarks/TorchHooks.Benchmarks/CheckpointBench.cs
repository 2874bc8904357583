using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
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

        public static int Run(string[] args)
        {
            int Arg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault() is var v && v > 0 ? v : fallback;
            int steps = Arg("--steps", 5), batch = Arg("--batch", 2048), rounds = Arg("--rounds", 3), threads = Arg("--threads", 0);
            bool mmap = args.Contains("--malloc-mmap");
            var child = args.SkipWhile(a => a != "--child").Skip(1).FirstOrDefault();
            if (child is not null) return Child(child, steps, batch, threads);

            Console.WriteLine($"# Activation checkpointing: {Blocks}-block residual MLP (width {Width}, hidden {Hidden}, batch {batch}), {Segments} segments, Adam; {steps} steps per child, {rounds} rounds; " +
                $"libtorch threads: {(threads > 0 ? threads.ToString() : "default")}; glibc malloc: {(mmap ? "MALLOC_MMAP_THRESHOLD_=131072 (static: freed tensors of 128 KB and more go back to the OS)" : "default (dynamic mmap threshold)")}");
            Console.WriteLine($"load average before: {Machine.LoadAverage()}; CPU flags: {CpuFlags()}; {Environment.ProcessorCount} logical cores");
            var results = Configs.ToDictionary(c => c, _ => new List<(double Ms, double CpuMs, double BaseMb, double PeakMb)>());
            for (int r = 0; r < rounds; r++)
            {
                var order = r % 2 == 0 ? Configs : Configs.Reverse().ToArray();
                foreach (var config in order)
                {
                    var line = RunChild(config, steps, batch, threads, mmap);
                    var f = line.Split(' ').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
                    results[config].Add((f[0], f[1], f[2], f[3]));
                    Console.WriteLine($"  round {r + 1} {config,-14} step {f[0],8:0.0} ms (CPU {f[1],8:0.0} ms)  baseline {f[2],7:0.0} MB  peak {f[3],7:0.0} MB  activations {f[3] - f[2],7:0.0} MB");
                }
            }
            Console.WriteLine($"load average after: {Machine.LoadAverage()}");

            double Ms(string c) => Stat.Median(results[c].Select(x => x.Ms));
            double Cpu(string c) => Stat.Median(results[c].Select(x => x.CpuMs));
            double Act(string c) => Stat.Median(results[c].Select(x => x.PeakMb - x.BaseMb));
            Console.WriteLine();
            Console.WriteLine("| Configuration | step time, wall (median) | × none | step CPU time (median) | × none | activation memory (peak RSS − baseline, median) | vs none |");
            Console.WriteLine("|---|---|---|---|---|---|---|");
            foreach (var c in Configs)
                Console.WriteLine($"| {c} | {Ms(c):0} ms | {Ms(c) / Ms("none"):0.00}× | {Cpu(c):0} ms | {Cpu(c) / Cpu("none"):0.00}× | {Act(c):0} MB | {(Act(c) / Act("none") - 1) * 100:+0;−0}% |");
            Console.WriteLine();
            double memCut = 1 - Act("every-block") / Act("none"), timeRatio = Ms("every-block") / Ms("none"), cpuRatio = Cpu("every-block") / Cpu("none");
            Console.WriteLine("Goals rows (docs/benchmarks.md, \"Goals at a glance\"):");
            Console.WriteLine($"| 7 | checkpointing, every block of a 24-block residual MLP: activation memory (VmHWM per child process) | ≥ 50% lower | {memCut * 100:0}% lower | {(memCut >= 0.5 ? "met" : "**missed**")} |");
            Console.WriteLine($"| 7 | checkpointing, every block: training step time (wall) | ≤ 1.4× | {timeRatio:0.00}× | {(timeRatio <= 1.4 ? "met" : "**missed**")} |");
            Console.WriteLine($"| 7 | checkpointing, every block: training step CPU time (process user + system) | ≤ 1.4× | {cpuRatio:0.00}× | {(cpuRatio <= 1.4 ? "met" : "**missed**")} |");
            Console.WriteLine($"| 7 | checkpointing, √n segments ({Segments}): activation memory / step CPU time (reported) | — | {(1 - Act("sqrt-segments") / Act("none")) * 100:0}% lower / {Cpu("sqrt-segments") / Cpu("none"):0.00}× | |");
            NothingCheckpointed();
            return 0;
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
            double cpu = 0;
            double Step(Tensor input, Tensor target)
            {
                using var d = NewDisposeScope();
                self.Refresh();
                var c0 = self.TotalProcessorTime;
                long t0 = Stopwatch.GetTimestamp();
                opt.zero_grad();
                var loss = nn.functional.mse_loss(m.call(input), target);
                if (s_memTrace) Console.Error.WriteLine($"after forward: RSS {VmMb("VmRSS:"):0.0} MB, HWM {VmHwmMb():0.0} MB");
                loss.Backward();
                if (s_memTrace) Console.Error.WriteLine($"after backward: RSS {VmMb("VmRSS:"):0.0} MB, HWM {VmHwmMb():0.0} MB");
                opt.step();
                long t1 = Stopwatch.GetTimestamp();
                self.Refresh();
                cpu = (self.TotalProcessorTime - c0).TotalMilliseconds;
                return (t1 - t0) * 1000.0 / Stopwatch.Frequency;
            }
            Step(x1, t1);   // gradients and Adam state exist from here: the baseline
            Step(x1, t1);
            double baseline = VmHwmMb();
            var times = new List<double>();
            var cpus = new List<double>();
            for (int i = 0; i < steps + 1; i++) { times.Add(Step(x, t)); cpus.Add(cpu); }
            double peak = VmHwmMb();
            Console.WriteLine(FormattableString.Invariant($"{Stat.Median(times.Skip(1)):0.000} {Stat.Median(cpus.Skip(1)):0.000} {baseline:0.0} {peak:0.0}"));
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
        private static void NothingCheckpointed()
        {
            set_num_threads(1);
            var bare = Models.TinyMlp();
            var wrappedModel = Models.TinyMlp();
            var wrapped = wrappedModel.WithHooks();
            bool inactive = wrapped.HookPoints().All(n => n.ActiveConcerns == 0 && !n.IsAttached && n.Checkpointing is null);
            int modules = wrapped.HookPoints().Count;
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
            for (int r = 0; r < 41; r++)   // paired rounds in alternating order: the difference of each pair, then the median
            {
                double ta, tb;
                if (r % 2 == 0) { ta = Time(bare); tb = Time(wrappedModel); }
                else { tb = Time(wrappedModel); ta = Time(bare); }
                a.Add(ta); b.Add(tb); diff.Add(tb - ta);
            }
            double extra = Stat.Median(diff) / modules;
            Console.WriteLine();
            Console.WriteLine($"Nothing checkpointed: concern inactive on all {modules} modules of the wrapped model: {inactive} (no call-path bit, no dispatcher attached).");
            Console.WriteLine($"  tiny MLP call, bare {Stat.Median(a):0} ns, wrapped with nothing checkpointed {Stat.Median(b):0} ns (medians of 41 paired rounds); median paired difference {extra:+0.0;−0.0} ns per module call (noise: the same TorchSharp code runs).");
            Console.WriteLine($"| 7 | checkpointing, nothing checkpointed: extra per module call | 0 ns (concern inactive) | {extra:+0.0;−0.0} ns ({(inactive ? "inactive" : "ACTIVE")}) | {(inactive ? "met" : "**missed**")} |");
        }
    }
}
