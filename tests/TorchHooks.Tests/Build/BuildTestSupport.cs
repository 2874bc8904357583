using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading.Tasks;
using NUnit.Framework;

namespace TorchHooks.Tests.Build
{
    /// <summary>Result of a finished child process.</summary>
    internal sealed record ProcessResult(int ExitCode, string StdOut, string StdErr)
    {
        public string Output => StdOut + Environment.NewLine + StdErr;
    }

    /// <summary>Runs child processes (gcc, readelf, dotnet msbuild) for the build tests.</summary>
    internal static class BuildTestSupport
    {
        private static readonly Lazy<string> RepoRootLazy = new(() =>
        {
            for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir != null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Wrapper.sln"))) return dir.FullName;
            throw new InvalidOperationException(
                $"No Wrapper.sln above the test folder '{TestContext.CurrentContext.TestDirectory}'. Run the tests from a build of the repository.");
        });

        /// <summary>The repository root (the folder holding Wrapper.sln).</summary>
        public static string RepoRoot => RepoRootLazy.Value;

        /// <summary>Full path of an executable on PATH, or null.</summary>
        public static string? FindOnPath(string name)
        {
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            {
                if (dir.Length == 0) continue;
                string candidate = Path.Combine(dir, name);
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        /// <summary>The dotnet host running the tests (DOTNET_HOST_PATH when set), else dotnet from PATH.</summary>
        public static string DotNet
        {
            get
            {
                string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
                if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
                return FindOnPath("dotnet") ?? throw new InvalidOperationException("dotnet is not on PATH and DOTNET_HOST_PATH is not set.");
            }
        }

        public static async Task<ProcessResult> RunAsync(string fileName, IEnumerable<string> arguments, string? workingDirectory = null,
            bool cleanMSBuildEnvironment = false, int timeoutSeconds = 180, IReadOnlyDictionary<string, string?>? environment = null)
        {
            var psi = new ProcessStartInfo(fileName)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
            };
            foreach (var a in arguments) psi.ArgumentList.Add(a);
            if (cleanMSBuildEnvironment)
            {
                // `dotnet test` passes its own MSBuild settings down to the test host; a child
                // `dotnet msbuild` must start from a clean slate, and must leave no server or nodes behind.
                var inherited = new List<string>();
                foreach (string key in psi.Environment.Keys)
                    if (key.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)) inherited.Add(key);
                foreach (var key in inherited) psi.Environment.Remove(key);
                psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
                psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
                psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
                psi.Environment["DOTNET_NOLOGO"] = "1";
            }
            if (environment != null)
                foreach (var (key, value) in environment)
                    psi.Environment[key] = value;
            using var p = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {fileName}.");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            var exited = p.WaitForExitAsync();
            if (await Task.WhenAny(exited, Task.Delay(TimeSpan.FromSeconds(timeoutSeconds))) != exited)
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"{fileName} {string.Join(" ", psi.ArgumentList)} did not finish within {timeoutSeconds} s.");
            }
            return new ProcessResult(p.ExitCode, await stdout, await stderr);
        }

        public static ProcessResult Run(string fileName, params string[] arguments) =>
            RunAsync(fileName, arguments).GetAwaiter().GetResult();

        /// <summary>`dotnet msbuild` with node reuse off and a clean MSBuild environment. Never restores.</summary>
        public static Task<ProcessResult> MSBuildAsync(params string[] arguments)
        {
            var args = new List<string> { "msbuild", "-nologo", "-nodeReuse:false" };
            args.AddRange(arguments);
            return RunAsync(DotNet, args, RepoRoot, cleanMSBuildEnvironment: true);
        }

        /// <summary>A fresh temporary folder, deleted by <see cref="IDisposable.Dispose"/>.</summary>
        public sealed class TempDir : IDisposable
        {
            public TempDir(string prefix)
            {
                Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
                Directory.CreateDirectory(Path);
            }
            public string Path { get; }
            public string File(string name) => System.IO.Path.Combine(Path, name);
            public string Sub(string name)
            {
                string p = System.IO.Path.Combine(Path, name);
                Directory.CreateDirectory(p);
                return p;
            }
            public void Dispose()
            {
                try { Directory.Delete(Path, recursive: true); }
                catch (IOException) { /* best effort; the temp folder is cleaned by the OS */ }
            }
        }
    }
}
