using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// TorchHooks packed once per test run into a temporary folder, as `dotnet pack src/TorchHooks` makes it
/// (from the build the tests already did, so the library is not compiled again). Each pack gets its own
/// version (0.2.0-local.&lt;UTC time&gt;), so NuGet can never serve a stale copy.
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
        var r = BuildTestSupport.RunAsync(BuildTestSupport.DotNet,
            new[] { "pack", Path.Combine(BuildTestSupport.RepoRoot, "src", "TorchHooks", "TorchHooks.csproj"),
                    "-c", Configuration, "--no-build", "-o", folder, "-nologo", "-v:q" },
            BuildTestSupport.RepoRoot, cleanMSBuildEnvironment: true, timeoutSeconds: 300).GetAwaiter().GetResult();
        if (r.ExitCode != 0) throw new InvalidOperationException("dotnet pack src/TorchHooks failed:\n" + r.Output);
        var nupkg = Directory.GetFiles(folder, "TorchHooks.*.nupkg").Single(f => !f.EndsWith(".snupkg", StringComparison.Ordinal));
        string version = Path.GetFileNameWithoutExtension(nupkg).Substring("TorchHooks.".Length);
        TestContext.Progress.WriteLine($"packed TorchHooks {version} into {folder}");
        return (folder, version);
    }

    /// <summary>The entries of the packed .nupkg.</summary>
    public static string[] Entries()
    {
        using var zip = ZipFile.OpenRead(Package);
        return zip.Entries.Select(e => e.FullName).ToArray();
    }

    /// <summary>The text of one entry of the packed .nupkg.</summary>
    public static string ReadEntry(string name)
    {
        using var zip = ZipFile.OpenRead(Package);
        var entry = zip.GetEntry(name) ?? throw new FileNotFoundException($"{name} is not in {Package}");
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd();
    }
}
