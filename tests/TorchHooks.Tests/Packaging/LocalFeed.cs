using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// TorchHooks and TorchHooks.NUnit packed once per test run into a temporary folder, as `dotnet pack` makes them
/// (from the build the tests already did, so nothing is compiled again). Each run gets its own version
/// (0.2.0-local.&lt;UTC time&gt;), so NuGet can never serve a stale copy; both packages get the same one (one
/// explicit VersionSuffix), so TorchHooks.NUnit's dependency on TorchHooks is the TorchHooks packed beside it.
/// </summary>
internal static class LocalFeed
{
    private static readonly Lazy<(string Folder, string Version)> s_feed = new(Pack);

    /// <summary>The folder holding TorchHooks.&lt;version&gt;.nupkg and .snupkg.</summary>
    public static string Folder => s_feed.Value.Folder;

    /// <summary>The packed version.</summary>
    public static string Version => s_feed.Value.Version;

    /// <summary>The .nupkg file.</summary>
    public static string Package => Path.Combine(Folder, $"TorchHooks.{Version}.nupkg");

    /// <summary>The TorchHooks.NUnit .nupkg file (same version).</summary>
    public static string NUnitPackage => Path.Combine(Folder, $"TorchHooks.NUnit.{Version}.nupkg");

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private static (string, string) Pack()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"torchhooks-feed-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        };
        string suffix = "local." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        foreach (var project in new[] { Path.Combine("src", "TorchHooks", "TorchHooks.csproj"), Path.Combine("src", "TorchHooks.NUnit", "TorchHooks.NUnit.csproj") })
        {
            var r = BuildTestSupport.RunAsync(BuildTestSupport.DotNet,
                new[] { "pack", Path.Combine(BuildTestSupport.RepoRoot, project),
                        "-c", Configuration, "--no-build", "-o", folder, "-nologo", "-v:q", "-p:VersionSuffix=" + suffix },
                BuildTestSupport.RepoRoot, cleanMSBuildEnvironment: true, timeoutSeconds: 300).GetAwaiter().GetResult();
            if (r.ExitCode != 0) throw new InvalidOperationException($"dotnet pack {project} failed:\n" + r.Output);
        }
        var nupkg = Directory.GetFiles(folder, "TorchHooks.*.nupkg").Single(f => !f.EndsWith(".snupkg", StringComparison.Ordinal) && !Path.GetFileName(f).StartsWith("TorchHooks.NUnit.", StringComparison.Ordinal));
        string version = Path.GetFileNameWithoutExtension(nupkg).Substring("TorchHooks.".Length);
        TestContext.Progress.WriteLine($"packed TorchHooks {version} into {folder}");
        return (folder, version);
    }

    /// <summary>The entries of the packed .nupkg (TorchHooks, or the one given).</summary>
    public static string[] Entries(string? package = null)
    {
        using var zip = ZipFile.OpenRead(package ?? Package);
        return zip.Entries.Select(e => e.FullName).ToArray();
    }

    /// <summary>The text of one entry of the packed .nupkg (TorchHooks, or the one given).</summary>
    public static string ReadEntry(string name, string? package = null)
    {
        using var zip = ZipFile.OpenRead(package ?? Package);
        var entry = zip.GetEntry(name) ?? throw new FileNotFoundException($"{name} is not in {package ?? Package}");
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd();
    }
}
