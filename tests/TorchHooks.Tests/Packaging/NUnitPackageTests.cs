using System.IO;
using System.Linq;
using System.Xml.Linq;
using NUnit.Framework;

namespace TorchHooks.Tests.Packaging;

/// <summary>The packed TorchHooks.NUnit.nupkg: layout, metadata and its dependencies (docs/packaging.md).</summary>
[TestFixture]
[Category("Slow")]   // packs the package: left out by --filter "TestCategory!=Slow" (README)
[NonParallelizable]
public class NUnitPackageTests
{
    private static XElement Metadata()
    {
        var nuspec = XDocument.Parse(LocalFeed.ReadEntry("TorchHooks.NUnit.nuspec", LocalFeed.NUnitPackage));
        return nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string? Meta(string name) => Metadata().Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;

    [Test]
    public void Package_carries_library_docs_and_readme_with_symbols_beside_it()
    {
        Assert.That(LocalFeed.Entries(LocalFeed.NUnitPackage), Is.SupersetOf(new[]
        {
            "lib/net8.0/TorchHooks.NUnit.dll",
            "lib/net8.0/TorchHooks.NUnit.xml",
            "README.md",
        }));
        Assert.That(File.Exists(Path.Combine(LocalFeed.Folder, $"TorchHooks.NUnit.{LocalFeed.Version}.snupkg")), Is.True);
        Assert.That(LocalFeed.ReadEntry("README.md", LocalFeed.NUnitPackage), Does.Contain("Matches.Snapshot(\"mlp\", input)"));
    }

    [Test]
    public void Metadata_same_version_licence_readme_repository()
    {
        Assert.That(Meta("id"), Is.EqualTo("TorchHooks.NUnit"));
        Assert.That(Meta("version"), Is.EqualTo(LocalFeed.Version), "packed with the same version as TorchHooks");
        var license = Metadata().Elements().Single(e => e.Name.LocalName == "license");
        Assert.That((license.Attribute("type")!.Value, license.Value), Is.EqualTo(("expression", "MIT")));
        Assert.That(Meta("readme"), Is.EqualTo("README.md"));
        Assert.That(Metadata().Elements().Single(e => e.Name.LocalName == "repository").Attribute("commit")?.Value, Does.Match("^[0-9a-f]{40}$"));
        Assert.That(Meta("description"), Does.Contain("Matches.Snapshot").And.Contain("never in CI"));
    }

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [Test, Description("Issue 20 item 2: packed alone (no shared suffix), it would depend on a TorchHooks that was never packed (NU1102); the pack is refused, giving the lines that work")]
    public void Lone_pack_without_a_shared_suffix_is_refused_with_the_lines_that_work()
    {
        using var dir = new TorchHooks.Tests.Build.BuildTestSupport.TempDir("torchhooks-lone-pack");
        var r = TorchHooks.Tests.Build.BuildTestSupport.RunAsync(TorchHooks.Tests.Build.BuildTestSupport.DotNet,
            new[] { "pack", Path.Combine("src", "TorchHooks.NUnit"), "-o", dir.Path, "-c", Configuration, "--no-build", "-nologo" },
            TorchHooks.Tests.Build.BuildTestSupport.RepoRoot, cleanMSBuildEnvironment: true, timeoutSeconds: 300).GetAwaiter().GetResult();
        Assert.That(r.ExitCode, Is.Not.EqualTo(0), r.Output);
        Assert.That(r.Output, Does.Contain("Pack TorchHooks.NUnit together with TorchHooks, with one version suffix")
            .And.Contain("dotnet pack src/TorchHooks -o <folder> -p:VersionSuffix=$suffix")
            .And.Contain("suffix=local.$(date -u +%Y%m%d%H%M%S)"));
        Assert.That(Directory.GetFiles(dir.Path, "*.nupkg"), Is.Empty, "no broken package is left behind");
    }

    [Test]
    public void Depends_on_the_TorchHooks_packed_beside_it_and_NUnit_4()
    {
        var deps = Metadata().Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => (Id: e.Attribute("id")!.Value, Version: e.Attribute("version")!.Value)).OrderBy(d => d.Id).ToList();
        Assert.That(deps, Is.EqualTo(new[] { ("NUnit", "4.0.1"), ("TorchHooks", LocalFeed.Version) }), "the lowest NUnit 4 (4.0.0 was never listed), so any NUnit 4 project adds it without NU1605");
    }
}
