using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--offload-probe [--layers 24] [--width 2048] [--passes 5]</c>: the big-model goals, one configuration per child
    /// process (tests/TorchHooks.OffloadChild, built here in Release), so each peak RSS (VmHWM) is that configuration's:
    /// all-resident inference, disk offload, disk offload with prefetch (two layers ahead), and loading the checkpoint
    /// (streaming into an empty model vs TorchSharp's Module.load into an allocated one). Prints the machine's load and CPU
    /// flags, one line per run, and markdown rows: median seconds per pass, throughput relative to resident, peak RSS above
    /// the process baseline, bit-identity of the outputs. The page cache is warm (the checkpoint was just written).
    /// </summary>
    internal static class OffloadProbe
    {
        public static int Run(string[] args)
        {
            int layers = Arg(args, "--layers", 24), width = Arg(args, "--width", 2048), passes = Arg(args, "--passes", 5);
            string root = RepoRoot();
            string project = Path.Combine(root, "tests", "TorchHooks.OffloadChild", "TorchHooks.OffloadChild.csproj");
            Exec("dotnet", "build", "-c", "Release", "-nologo", "-v", "q", project);
            string child = Path.Combine(root, "tests", "TorchHooks.OffloadChild", "bin", "Release", "net10.0", "TorchHooks.OffloadChild.dll");
            string dir = Path.Combine(Path.GetTempPath(), $"torchhooks-offload-probe-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                string model = Path.Combine(dir, "model.bin");
                Exec("dotnet", child, "write", model, $"{layers}", $"{width}");
                long layerBytes = (long)width * width * 4 + width * 4, modelBytes = layers * layerBytes;
                Console.WriteLine($"uptime: {Exec("uptime").Trim()}");
                Console.WriteLine($"cpu flags: {string.Join(" ", CpuFlags())}; {Environment.ProcessorCount} cores");
                Console.WriteLine($"model: {layers} x Linear({width}, {width}) float32 = {modelBytes / 1e6:F0} MB; layer {layerBytes / 1e6:F1} MB; {passes} passes of a batch of 8");
                var rows = new List<string[]>();
                foreach (var config in new[] { "resident", "offload", $"prefetch:{2 * layerBytes}" })
                {
                    string output = Path.Combine(dir, "out-" + config.Replace(':', '-'));
                    var line = Exec("dotnet", child, "run", model, $"{layers}", $"{width}", config, $"{passes}", output).Trim().Split('\n').Last();
                    Console.WriteLine(line);
                    rows.Add(line.Split(' '));
                }
                var want = File.ReadAllBytes(Path.Combine(dir, "out-resident"));
                double resident = Seconds(rows[0]);
                Console.WriteLine();
                Console.WriteLine("| configuration | median s/pass | throughput vs resident | peak RSS above baseline | prefetch hits/waits | output |");
                Console.WriteLine("|---|---|---|---|---|---|");
                foreach (var r in rows)
                {
                    bool same = File.ReadAllBytes(Path.Combine(dir, "out-" + r[0].Replace(':', '-'))).SequenceEqual(want);
                    string name = r[0].StartsWith("prefetch:", StringComparison.Ordinal) ? $"disk offload + prefetch ({long.Parse(r[0].Substring(9), CultureInfo.InvariantCulture) / 1e6:F0} MB, 1 thread)" : r[0] == "offload" ? "disk offload" : "all resident";
                    Console.WriteLine($"| {name} | {Seconds(r):F3} | {resident / Seconds(r):F2}× | {long.Parse(r[3], CultureInfo.InvariantCulture) / 1e6:F0} MB | {r[5]}/{r[6]} | {(same ? "bit-identical" : "DIFFERENT")} |");
                }
                Console.WriteLine();
                Console.WriteLine($"| load of an S = {modelBytes / 1e6:F0} MB checkpoint | seconds | peak RSS above baseline |");
                Console.WriteLine("|---|---|---|");
                foreach (var how in new[] { "stream", "build" })
                {
                    var r = Exec("dotnet", child, "load", model, $"{layers}", $"{width}", how).Trim().Split('\n').Last().Split(' ');
                    string name = how == "stream" ? "empty model + streaming load_state_dict" : "allocated model + TorchSharp Module.load";
                    Console.WriteLine($"| {name} | {Seconds(r):F2} | {long.Parse(r[3], CultureInfo.InvariantCulture) / 1e6:F0} MB |");
                }
                return 0;
            }
            finally { Directory.Delete(dir, recursive: true); }
        }

        private static double Seconds(string[] row) => double.Parse(row[4], CultureInfo.InvariantCulture);

        private static int Arg(string[] args, string name, int fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
        }

        private static string RepoRoot()
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Wrapper.sln"))) return d.FullName;
            throw new InvalidOperationException("Run the probe from a build inside the repository (no Wrapper.sln above the output folder).");
        }

        private static IEnumerable<string> CpuFlags()
        {
            if (!File.Exists("/proc/cpuinfo")) return new[] { "?" };
            var text = File.ReadAllText("/proc/cpuinfo");
            return new[] { "avx2", "avx512_bf16", "amx_bf16" }.Where(f => text.Contains(" " + f, StringComparison.Ordinal));
        }

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
