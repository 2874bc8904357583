using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// A user's workspace outside the repository for the consumer tests: a temporary folder (nothing above it may
/// inject Directory.Build.* or central package versions) and a private NuGet packages folder with the user's cache
/// as a read-only fallback folder, so nothing the tests restore lands in the user's cache. The package source of
/// the freshly packed feed (<see cref="LocalFeed"/>) is added the way the docs say (<see cref="RunDocLines"/>:
/// a nuget.config in the workspace), never in the user-level NuGet configuration.
/// </summary>
internal sealed class UserWorkspace : IDisposable
{
    private readonly BuildTestSupport.TempDir _root;

    public UserWorkspace(string prefix, bool feedConfig = true)
    {
        _root = new BuildTestSupport.TempDir(prefix);
        for (var dir = new DirectoryInfo(_root.Path); dir != null; dir = dir.Parent)
            foreach (var f in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
                Assume.That(File.Exists(System.IO.Path.Combine(dir.FullName, f)), Is.False, $"{f} in {dir.FullName} would leak into the user's projects");
        GlobalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env
            ? env : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        Packages = _root.Sub("packages");
        if (!feedConfig) return;
        File.WriteAllText(_root.File("nuget.config"), $@"<?xml version=""1.0"" encoding=""utf-8""?>
<configuration>
  <packageSources>
    <add key=""torchhooks-local"" value=""{LocalFeed.Folder}"" />
  </packageSources>
  <fallbackPackageFolders>
    <add key=""user-cache"" value=""{GlobalPackages}"" />
  </fallbackPackageFolders>
</configuration>
");
    }

    /// <summary>The workspace folder.</summary>
    public string Path => _root.Path;

    /// <summary>The private NuGet packages folder.</summary>
    public string Packages { get; }

    /// <summary>The user's NuGet cache (read as a fallback folder only).</summary>
    public string GlobalPackages { get; }

    /// <summary>A sub-folder, created if missing.</summary>
    public string Sub(string name) => _root.Sub(name);

    /// <summary>Runs <c>dotnet</c> in <paramref name="folder"/> with the private packages folder and a clean MSBuild environment.</summary>
    public ProcessResult Dotnet(string folder, IReadOnlyDictionary<string, string?>? environment, params string[] args)
    {
        var env = environment is null ? new Dictionary<string, string?>() : new Dictionary<string, string?>(environment);
        env["NUGET_PACKAGES"] = Packages;
        env["NUGET_FALLBACK_PACKAGES"] = GlobalPackages;   // read-only, as the workspace's nuget.config would say
        var watch = Stopwatch.StartNew();
        var r = BuildTestSupport.RunAsync(BuildTestSupport.DotNet, args.Concat(new[] { "-nologo" }), folder,
            cleanMSBuildEnvironment: true, timeoutSeconds: 600, environment: env).GetAwaiter().GetResult();
        TestContext.Out.WriteLine($"dotnet {string.Join(" ", args)} (exit {r.ExitCode}, {watch.Elapsed.TotalSeconds:F0} s)");
        return r;
    }

    /// <summary>
    /// Runs shell lines copied from the docs (<see cref="DocLines"/>) in <paramref name="folder"/>, one by one, with bash,
    /// the private packages folder and a clean MSBuild environment; <c>~/torchhooks-packages</c> (the docs' package
    /// folder) is the feed the suite packed. Fails on the first line that fails, naming it.
    /// </summary>
    public void RunDocLines(string folder, IEnumerable<string> lines)
    {
        foreach (var line in lines)
        {
            string command = line.Replace(DocLines.PackageFolder, LocalFeed.Folder);
            var env = new Dictionary<string, string?>
            {
                ["NUGET_PACKAGES"] = Packages,
                ["NUGET_FALLBACK_PACKAGES"] = GlobalPackages,
                ["PATH"] = System.IO.Path.GetDirectoryName(BuildTestSupport.DotNet) + System.IO.Path.PathSeparator + Environment.GetEnvironmentVariable("PATH"),
                ["DOTNET_NOLOGO"] = "1",
            };
            var watch = Stopwatch.StartNew();
            var r = BuildTestSupport.RunAsync("bash", new[] { "-c", "set -euo pipefail; " + command }, folder,
                cleanMSBuildEnvironment: true, timeoutSeconds: 600, environment: env).GetAwaiter().GetResult();
            TestContext.Out.WriteLine($"$ {line}   (exit {r.ExitCode}, {watch.Elapsed.TotalSeconds:F0} s)");
            if (r.ExitCode != 0) Assert.Fail($"The docs' line `{line}` failed in {folder}:\n{r.Output}");
        }
    }

    public void Dispose() => _root.Dispose();
}
