using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Suite 9, models bigger than memory: one configuration per child process (tests/TorchHooks.OffloadChild, built here
    /// in Release), so each peak RSS (VmHWM) is that configuration's alone — all-resident inference, disk offload with
    /// mapped weights (Accelerate's offload folder, no copy), with prefetch, the same two copying into pooled buffers
    /// (<c>MapWeights = false</c>), and loading the checkpoint (streaming into an empty model vs TorchSharp's
    /// <c>Module.load</c> into an allocated one). Throughput comes from one more child process that runs every configuration
    /// pass by pass in turn (ratios within a group of neighbouring passes). Memory rounds alternate the configurations'
    /// order. The page cache is warm (the checkpoint was just written).
    /// Run: <c>dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --offload-probe [--rounds 2] [--groups 21] [--layers 24] [--width 2048] [--passes 5]</c>;
    /// the docs run (<c>--write-docs</c>, or <c>--print-docs --suites Offload</c>) runs it too.
    /// </summary>
    internal static class OffloadProbe
    {
        /// <summary>The section's heading in docs/benchmarks.md.</summary>
        public const string Title = "9. Models bigger than memory: disk offload, prefetch and streaming loads (child processes)";

        public const string ResidentCase = "resident", OffloadCase = "offload", PrefetchCase = "prefetch",
                            OffloadCopyCase = "offload-copy", PrefetchCopyCase = "prefetch-copy", StreamCase = "load-stream", BuildCase = "load-build",
                            OffloadColdCase = "offload-cold", PrefetchColdCase = "prefetch-cold";

        /// <summary>Every case this runner measures.</summary>
        internal static IReadOnlyCollection<string> CaseKeys { get; } = new[] { ResidentCase, OffloadCase, PrefetchCase, OffloadCopyCase, PrefetchCopyCase, OffloadColdCase, PrefetchColdCase, StreamCase, BuildCase };

        /// <summary>Goals: offloaded throughput relative to all-resident, without and with prefetch (warm page cache, 2 cores).</summary>
        public const double GoalOffload = 0.5, GoalPrefetch = 0.8;

        /// <summary>Layers read ahead by the prefetch configurations.</summary>
        public const int PrefetchLayers = 2;

        public sealed class Case
        {
            public string Key = "", Name = "", Arg = "";
            public readonly List<double> Seconds = new();
            public readonly List<long> Peak = new();
            public int Hits, Waits, Misses;
            public double SpeedSeconds, SpeedRatio = double.NaN;   // from the one-process speed run (pass by pass in turn)
            public bool? Identical;
            public double Median => Stat.Median(Seconds);
            public long PeakMax => Peak.Count == 0 ? 0 : Peak.Max();
        }

        public sealed class Result
        {
            public readonly List<Case> Cases = new();
            public int Layers, Width, Passes, Rounds, Groups;
            public long LayerBytes, ModelBytes, LargestTensor;
            public string LoadBefore = "", LoadAfter = "", Flags = "";
            public TimeSpan Elapsed;
            public Case this[string key] => Cases.First(c => c.Key == key);
            public long Budget => ModelBytes / 4;
            public long Activations => 2L * 8 * Width * 4 + (1 << 20);
            public long PrefetchBytes => PrefetchLayers * LayerBytes;

            /// <summary>The case's throughput relative to resident: the speed run's median over groups of resident s/pass ÷ the case's, within a group.</summary>
            public double Throughput(string key) => this[key].SpeedRatio;
        }

        public static int Run(string[] args)
        {
            int rounds = Int(args, "--rounds", 2), layers = Int(args, "--layers", 24), width = Int(args, "--width", 2048), passes = Int(args, "--passes", 5);
            var r = Measure(DocsRun.FindRepoRoot(), rounds, layers, width, passes, log: true, groups: Int(args, "--groups", 21));
            Console.WriteLine(Markdown(r, heading: true));
            return 0;
        }

        public static Result Measure(string root, int rounds, int layers, int width, int passes, bool log, int groups = 21)
        {
            var total = Stopwatch.StartNew();
            var r = new Result
            {
                Layers = layers, Width = width, Passes = passes, Rounds = rounds, Groups = groups, LoadBefore = Machine.LoadAverage(),
                LayerBytes = (long)width * width * 4 + width * 4, LargestTensor = (long)width * width * 4,
                Flags = Machine.Collect(root).FlagList(Machine.BfloatFlags),
            };
            r.ModelBytes = layers * r.LayerBytes;
            string project = Path.Combine(root, "tests", "TorchHooks.OffloadChild", "TorchHooks.OffloadChild.csproj");
            Exec("dotnet", "build", "-c", "Release", "-nologo", "-v", "q", project);
            string child = Path.Combine(root, "tests", "TorchHooks.OffloadChild", "bin", "Release", "net10.0", "TorchHooks.OffloadChild.dll");
            string prefetch = r.PrefetchBytes.ToString(CultureInfo.InvariantCulture);
            r.Cases.AddRange(new[]
            {
                new Case { Key = ResidentCase, Name = "all resident (Module.load)", Arg = "resident" },
                new Case { Key = OffloadCase, Name = "disk offload, mapped (no copy)", Arg = "offload" },
                new Case { Key = PrefetchCase, Name = $"disk offload, mapped, + prefetch ({r.PrefetchBytes / 1e6:F0} MB, 1 thread)", Arg = "prefetch:" + prefetch },
                new Case { Key = OffloadCopyCase, Name = "disk offload, copied into pooled buffers", Arg = "offload-copy" },
                new Case { Key = PrefetchCopyCase, Name = $"disk offload, copied, + prefetch ({r.PrefetchBytes / 1e6:F0} MB, 1 thread)", Arg = "prefetch-copy:" + prefetch },
                new Case { Key = OffloadColdCase, Name = "disk offload, mapped, cold page cache", Arg = "offload-cold" },
                new Case { Key = PrefetchColdCase, Name = $"disk offload, mapped, + prefetch ({r.PrefetchBytes / 1e6:F0} MB, 1 thread), cold page cache", Arg = "prefetch-cold:" + prefetch },
                new Case { Key = StreamCase, Name = "empty model + streaming load_state_dict", Arg = "stream" },
                new Case { Key = BuildCase, Name = "allocated model + TorchSharp Module.load", Arg = "build" },
            });
            string dir = Path.Combine(Path.GetTempPath(), $"torchhooks-offload-probe-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                string model = Path.Combine(dir, "model.bin");
                Exec("dotnet", child, "write", model, $"{layers}", $"{width}");
                if (log) Console.WriteLine($"model: {layers} x Linear({width}, {width}) float32 = {r.ModelBytes / 1e6:F0} MB; layer {r.LayerBytes / 1e6:F1} MB; load {Machine.LoadAverage()}");
                // Throughput: every configuration in one process, pass by pass in turn (the child's speed mode).
                foreach (var line in Exec("dotnet", child, "speed", model, $"{layers}", $"{width}", prefetch, $"{groups}").Trim().Split('\n'))
                {
                    if (log) Console.WriteLine(line.Trim());
                    var f = line.Trim().Split(' ');
                    if (f.Length < 7 || f[0] != "speed") continue;
                    var c = r[f[1]];   // the speed run's keys are the warm configurations' keys
                    c.SpeedSeconds = double.Parse(f[2], CultureInfo.InvariantCulture);
                    c.SpeedRatio = double.Parse(f[3], CultureInfo.InvariantCulture);
                    c.Hits = int.Parse(f[4], CultureInfo.InvariantCulture);
                    c.Waits = int.Parse(f[5], CultureInfo.InvariantCulture);
                    c.Misses = int.Parse(f[6], CultureInfo.InvariantCulture);
                }
                // Memory: one process per configuration (its VmHWM is its own), rounds in alternating order.
                for (int round = 0; round < rounds; round++)
                {
                    var order = round % 2 == 0 ? r.Cases : Enumerable.Reverse(r.Cases).ToList();
                    foreach (var c in order)
                    {
                        string line;
                        if (c.Key is StreamCase or BuildCase)
                            line = Last(Exec("dotnet", child, "load", model, $"{layers}", $"{width}", c.Arg));
                        else
                            line = Last(Exec("dotnet", child, "run", model, $"{layers}", $"{width}", c.Arg, $"{passes}", Path.Combine(dir, "out-" + c.Key)));
                        if (log) Console.WriteLine($"round {round + 1}: {c.Key}: {line}");
                        var f = line.Split(' ');
                        c.Peak.Add(long.Parse(f[3], CultureInfo.InvariantCulture));
                        c.Seconds.Add(double.Parse(f[4], CultureInfo.InvariantCulture));
                    }
                    var want = File.ReadAllBytes(Path.Combine(dir, "out-" + ResidentCase));
                    foreach (var c in r.Cases.Where(c => c.Key is not (StreamCase or BuildCase)))
                        c.Identical = (c.Identical ?? true) && File.ReadAllBytes(Path.Combine(dir, "out-" + c.Key)).SequenceEqual(want);
                }
            }
            finally { Directory.Delete(dir, recursive: true); }
            r.LoadAfter = Machine.LoadAverage();
            r.Elapsed = total.Elapsed;
            return r;
        }

        /// <summary>The goal rows: throughput without and with prefetch, peak RSS of the offload runs, the streaming load's peak.</summary>
        internal static GoalRow[] GoalsOf(Result r)
        {
            double off = r.Throughput(OffloadCase), pre = r.Throughput(PrefetchCase);
            long offPeak = Math.Max(r[OffloadCase].PeakMax, r[PrefetchCase].PeakMax);
            long loadPeak = r[StreamCase].PeakMax;
            bool identical = r.Cases.All(c => c.Identical != false);
            return new[]
            {
                Goals.OffloadThroughput.Row($"{off:0.00}×", off >= GoalOffload),
                Goals.PrefetchThroughput.Row($"{pre:0.00}×", pre >= GoalPrefetch, whatSuffix: $" ({r.PrefetchBytes / 1e6:F0} MB read ahead, 1 thread)"),
                Goals.OffloadPeak.Row($"+{offPeak / 1e6:F0} MB{(identical ? ", outputs bit-identical" : ", outputs DIFFERENT")}", offPeak <= r.Budget + r.Activations && identical,
                                      target: $"≤ budget + activations = {(r.Budget + r.Activations) / 1e6:F0} MB, bit-identical"),
                Goals.StreamingLoadPeak.Row($"+{loadPeak / 1e6:F0} MB (build-then-load: +{r[BuildCase].PeakMax / 1e6:F0} MB)", loadPeak <= r.ModelBytes + r.LargestTensor,
                                            target: $"≤ S + largest tensor = {(r.ModelBytes + r.LargestTensor) / 1e6:F0} MB"),
            };
        }

        /// <summary>Section 9 of docs/benchmarks.md (or the console report).</summary>
        public static string Markdown(Result r, bool heading)
        {
            var inv = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            if (heading) sb.AppendLine($"## {Title}").AppendLine();
            sb.AppendLine(string.Create(inv, $"{r.Layers} × `Linear({r.Width}, {r.Width})` float32 = S = {r.ModelBytes / 1e6:F0} MB (layer {r.LayerBytes / 1e6:F1} MB, largest tensor {r.LargestTensor / 1e6:F1} MB); inference on a batch of 8 under `no_grad`, warm page cache unless marked cold. " +
                $"**Throughput**: one child process (`tests/TorchHooks.OffloadChild speed`) holds the resident model and one offloaded copy per configuration and runs them pass by pass in turn, {r.Groups} groups after a warm-up group (which checks every output bit-identical to resident); a configuration's throughput relative to resident is resident s/pass ÷ its s/pass within a group, median over groups (the machine's busy phases hit neighbouring passes alike). " +
                $"**Memory**: each configuration runs in its own child process, {r.Rounds} rounds in alternating order, {r.Passes} passes each; peak RSS is VmHWM minus the baseline VmRSS taken after a warm-up of the same code on a tiny model, the largest over rounds. " +
                $"The offload runs read Accelerate's offload folder (aligned `.dat` files, one write per tensor), which the child writes with the model. " +
                $"Load average {r.LoadBefore} before, {r.LoadAfter} after; {r.Elapsed.TotalSeconds:0} s. CPU flags: {r.Flags}; {Environment.ProcessorCount} logical cores. " +
                $"Command: `dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --offload-probe`."));
            sb.AppendLine();
            sb.AppendLine("| Configuration | Median s/pass (speed run) | Throughput vs resident | Peak RSS above baseline (own process) | Prefetch hits/waits/misses | Output |").AppendLine("|---|---:|---:|---:|---:|---|");
            foreach (var c in r.Cases.Where(c => c.Key is not (StreamCase or BuildCase or OffloadColdCase or PrefetchColdCase)))
                sb.AppendLine(string.Create(inv, $"| {c.Name} | {c.SpeedSeconds:0.000} | {(c.Key == ResidentCase ? "1.00×" : $"{r.Throughput(c.Key):0.00}×")} | {c.PeakMax / 1e6:F0} MB | {(c.Key.StartsWith(PrefetchCase, StringComparison.Ordinal) ? $"{c.Hits}/{c.Waits}/{c.Misses}" : "")} | {(c.Key == ResidentCase ? "reference" : c.Identical == true ? "bit-identical" : "**different**")} |"));
            sb.AppendLine();
            sb.AppendLine("Cold page cache: before every pass the child drops the offload folder's files from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`, no root needed), so each pass reads the weights from the disk (a virtual disk here); each in its own process, median s/pass over its passes and rounds, against the resident process's.").AppendLine();
            sb.AppendLine("| Configuration | Median s/pass (own process) | vs resident's (own process) | Peak RSS above baseline |").AppendLine("|---|---:|---:|---:|");
            foreach (var c in new[] { r[ResidentCase], r[OffloadColdCase], r[PrefetchColdCase] })
                sb.AppendLine(string.Create(inv, $"| {c.Name} | {c.Median:0.000} | {r[ResidentCase].Median / c.Median:0.00}× | {c.PeakMax / 1e6:F0} MB |"));
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"| Load of the S = {r.ModelBytes / 1e6:F0} MB checkpoint (`Module.save` format) | Median seconds | Peak RSS above baseline |")).AppendLine("|---|---:|---:|");
            foreach (var c in r.Cases.Where(c => c.Key is StreamCase or BuildCase))
                sb.AppendLine(string.Create(inv, $"| {c.Name} | {c.Median:0.00} | {c.PeakMax / 1e6:F0} MB |"));
            sb.AppendLine();
            foreach (var g in GoalsOf(r))
                sb.AppendLine($"- **Goal:** {g.What}: {g.Target}; measured {g.Measured}: {(g.State == GoalState.Met ? "met" : "**missed**")}.");
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"Budget: the weights are 4× it ({r.Budget / 1e6:F0} MB); activations allowance {r.Activations / 1e6:F1} MB (a layer's input and output plus 1 MB of allocator slack). ") +
                "Mapped weights cost no copy: the module computes on the page cache's pages (file-backed RSS while mapped); copied weights are one `pread` per tensor into buffers the pool keeps faulted in. " +
                "Where the time goes per tensor: `dotnet tests/TorchHooks.OffloadChild/bin/Release/net10.0/TorchHooks.OffloadChild.dll profile <model.bin> 24 2048 11` (docs/offload.md).");
            return sb.ToString();
        }

        /// <summary>Section 9 of docs/benchmarks.md and its goal rows, for <see cref="Report.Render"/>.</summary>
        internal static PairedSection Section(Result r) => new(Title, Markdown(r, heading: false), GoalsOf(r));

        private static string Last(string output) => output.Trim().Split('\n').Last().Trim();

        private static int Int(string[] args, string name, int fallback)
            => int.TryParse(DocsRun.Arg(args, name) ?? "", NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : fallback;

        private static string Exec(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {file}.");
            var err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(" ", args)} exited with {p.ExitCode}:\n{output}\n{err.Result}");
            return output;
        }
    }
}
