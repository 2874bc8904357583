using System.IO;
using System.Linq;
using System.Xml.Linq;
using NUnit.Framework;

namespace TorchHooks.Tests.Packaging;

/// <summary>The packed TorchHooks.nupkg: layout and metadata (docs/packaging.md).</summary>
[TestFixture]
[Category("Slow")]   // packs the package: left out by --filter "TestCategory!=Slow" (README)
[NonParallelizable]
public class PackageTests
{
    private static XElement Metadata()
    {
        var nuspec = XDocument.Parse(LocalFeed.ReadEntry("TorchHooks.nuspec"));
        return nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string? Meta(string name) => Metadata().Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;

    [Test]
    public void Package_carries_library_docs_build_step_notebook_extension_analyzers_and_readme()
    {
        var entries = LocalFeed.Entries();
        Assert.That(entries, Is.SupersetOf(new[]
        {
            "lib/net8.0/TorchHooks.dll",
            "lib/net8.0/TorchHooks.xml",
            "buildTransitive/TorchHooks.targets",
            "buildTransitive/ElfVersionNeeds.cs",
            "interactive-extensions/dotnet/extension.dib",
            "analyzers/dotnet/cs/TorchHooks.Analyzers.dll",
            "analyzers/dotnet/cs/TorchHooks.CodeFixes.dll",
            "README.md",
        }));
        // Nothing of the repository's own build plumbing (backend selection) leaks into users' builds.
        Assert.That(entries.Where(e => e.StartsWith("build/") || e.EndsWith("TorchHooks.Build.targets")), Is.Empty);
    }

    [Test]
    public void Symbols_package_is_made_next_to_it()
    {
        Assert.That(File.Exists(Path.Combine(LocalFeed.Folder, $"TorchHooks.{LocalFeed.Version}.snupkg")), Is.True);
    }

    [Test]
    public void Metadata_licence_readme_repository_and_a_true_description()
    {
        Assert.That(Meta("id"), Is.EqualTo("TorchHooks"));
        Assert.That(LocalFeed.Version, Does.Match(@"^0\.2\.0-local\.\d{14}$"), "a local pack gets a version that changes with each pack");
        var license = Metadata().Elements().Single(e => e.Name.LocalName == "license");
        Assert.That(license.Attribute("type")!.Value, Is.EqualTo("expression"));
        Assert.That(license.Value, Is.EqualTo("MIT"));
        Assert.That(Meta("readme"), Is.EqualTo("README.md"));
        var repository = Metadata().Elements().Single(e => e.Name.LocalName == "repository");
        Assert.That(repository.Attribute("type")!.Value, Is.EqualTo("git"));
        Assert.That(repository.Attribute("commit")?.Value, Does.Match("^[0-9a-f]{40}$"));
        string description = Meta("description")!;
        Assert.That(description, Does.Contain("forward pre-hooks").And.Contain("autocast").And.Contain("GLIBCXX").Or.Contain("Debian 12"));
        // Only what exists is claimed.
        Assert.That(description, Does.Not.Contain("backward hook").And.Not.Contain("tracing"));
    }

    [Test]
    public void Only_dependency_is_TorchSharp_the_runtime_is_the_users_choice()
    {
        var deps = Metadata().Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => (Id: e.Attribute("id")!.Value, Version: e.Attribute("version")!.Value)).ToList();
        Assert.That(deps, Is.EqualTo(new[] { ("TorchSharp", "0.107.0") }));
    }

    [Test]
    public void Notebook_extension_prepares_the_native_load_and_package_readme_shows_the_first_cell()
    {
        Assert.That(LocalFeed.ReadEntry("interactive-extensions/dotnet/extension.dib"), Does.Contain("TorchHooks.NativeLoading.Prepare()"));
        Assert.That(LocalFeed.ReadEntry("README.md"), Does.Contain("#r \"nuget: TorchHooks, 0.2.0-*\"").And.Contain("libtorch-cpu-linux-x64"));
    }

    [Test]
    public void Packaged_build_step_is_the_repository_one()
    {
        string repo = Build.BuildTestSupport.RepoRoot;
        Assert.That(LocalFeed.ReadEntry("buildTransitive/TorchHooks.targets"),
            Is.EqualTo(File.ReadAllText(Path.Combine(repo, "src", "TorchHooks.Build", "TorchHooks.targets"))));
        Assert.That(LocalFeed.ReadEntry("buildTransitive/ElfVersionNeeds.cs"),
            Is.EqualTo(File.ReadAllText(Path.Combine(repo, "src", "TorchHooks.Build", "ElfVersionNeeds.cs"))));
    }
}
