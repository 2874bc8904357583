using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks.Benchmarks
{
    /// <summary>What the numbers were measured on.</summary>
    internal sealed class Machine
    {
        /// <summary>CPU flags that decide how fast bf16 matmuls can be.</summary>
        public static readonly string[] BfloatFlags = { "avx2", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile" };

        public string Cpu = "unknown";
        public int LogicalCores = Environment.ProcessorCount;
        public string PhysicalCores = "?";
        public string CpuFamilyModel = "";
        public HashSet<string> Flags = new();
        public string Os = RuntimeInformation.OSDescription;
        public string Kernel = "";
        public string DotNet = RuntimeInformation.FrameworkDescription;
        public string TorchSharp = "";
        public string LibTorch = "";
        public string BenchmarkDotNet = "";
        public string GitCommit = "";
        public DateTime StartedUtc = DateTime.UtcNow;

        public static Machine Collect(string repoRoot)
        {
            var m = new Machine();
            try
            {
                var lines = File.ReadAllLines("/proc/cpuinfo");
                string Field(string key) => lines.FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal) && l.Substring(key.Length).TrimStart().StartsWith(":"))
                    ?.Split(':', 2)[1].Trim() ?? "";
                m.Cpu = Field("model name");
                var mhz = Field("cpu MHz");
                if (mhz.Length > 0) m.Cpu += $" ({mhz} MHz reported)";
                var family = Field("cpu family");
                var model = Field("model");
                if (family.Length > 0) m.CpuFamilyModel = $"family {family}, model {model}";
                var cores = Field("cpu cores");
                if (cores.Length > 0) m.PhysicalCores = cores;
                m.Flags = new HashSet<string>(Field("flags").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            }
            catch (IOException) { }
            try
            {
                var pretty = File.ReadAllLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal));
                if (pretty != null) m.Os = pretty.Substring("PRETTY_NAME=".Length).Trim('"');
                m.Kernel = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
            }
            catch (IOException) { }
            var torchAsm = typeof(torch).Assembly;
            m.TorchSharp = torchAsm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0]
                           ?? torchAsm.GetName().Version?.ToString() ?? "?";
            m.LibTorch = $"{torch.__version__} (package libtorch-{Meta("TorchBackend")}-*, {Meta("LibTorchPackageVersion")})";
            m.BenchmarkDotNet = typeof(BenchmarkDotNet.Running.BenchmarkRunner).Assembly
                .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0] ?? "?";
            m.GitCommit = Git(repoRoot, "rev-parse --short HEAD");
            if (m.GitCommit.Length > 0 && Git(repoRoot, "status --porcelain --untracked-files=no").Length > 0) m.GitCommit += " (with uncommitted changes)";
            return m;
        }

        public static string Meta(string key) =>
            typeof(Machine).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value ?? "?";

        public string FlagList(IEnumerable<string> names) =>
            string.Join(", ", names.Select(f => Flags.Contains(f) ? $"`{f}` yes" : $"`{f}` **no**"));

        public bool HasNativeBf16 => Flags.Contains("avx512_bf16") || Flags.Contains("amx_bf16");

        /// <summary>/proc/loadavg's first three fields (1, 5, 15 minutes), or "?".</summary>
        public static string LoadAverage()
        {
            try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
            catch (IOException) { return "?"; }
        }

        private static string Git(string dir, string args)
        {
            try
            {
                var psi = new ProcessStartInfo("git", args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = Process.Start(psi)!;
                var output = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit(10_000);
                return p.ExitCode == 0 ? output : "";
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException) { return ""; }
        }
    }
}
