using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// TorchHooks.NUnit as a user gets it: an NUnit test project in a temporary folder outside the repository, made by
/// the lines of docs/snapshots.md's "Add it to an NUnit project" read from the file and run as written
/// (<c>dotnet new nunit</c>, whose NUnit 4.3.2 must take TorchHooks.NUnit without NU1605; the local folder source;
/// <c>dotnet add package TorchHooks.NUnit</c>), guards a small model with the one-line assertion, and runs
/// `dotnet test`: the first run creates the snapshot, says so at dotnet test's normal verbosity, and passes,
/// a planted change (a wider hidden layer, switched by an environment variable so the project is built once) fails
/// naming the first divergent module. One restore+build, two test runs (CI=true on a missing snapshot is covered
/// in Snapshots/SnapshotTests.cs).
/// NuGet restores into a private packages folder (the user's cache is only a fallback folder).
/// </summary>
[TestFixture]
[Category("Slow")]   // packs, builds and tests a user's NUnit project: left out by --filter "TestCategory!=Slow" (README)
[NonParallelizable]
public class SnapshotConsumerTests
{
    private UserWorkspace _root = null!;
    private string _project = null!;

    internal const string TestSource = @"using System;
using NUnit.Framework;
using TorchHooks.NUnit;
using TorchSharp;
using static TorchSharp.torch;

public class ModelTests
{
    [Test]
    public void Mlp_is_unchanged()
    {
        using var x = torch.ones(4, 3);
        Assert.That(new Mlp(), Matches.Snapshot(""mlp"", x));
    }
}

sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> fc1, act, fc2;

    public Mlp() : base(nameof(Mlp))
    {
        int hidden = Environment.GetEnvironmentVariable(""PLANTED_CHANGE"") == ""1"" ? 16 : 8;   // the planted change
        torch.manual_seed(0);
        fc1 = nn.Linear(3, hidden);
        act = nn.ReLU();
        fc2 = nn.Linear(hidden, 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc2.call(act.call(fc1.call(x)));
}
";

    [OneTimeSetUp]
    public void CreateAndBuildConsumer()
    {
        _root = new UserWorkspace("torchhooks-nunit-consumer", feedConfig: false);
        _project = _root.Sub("ModelTests");
        var (pack, install) = DocsLines();
        // The pack lines are what LocalFeed ran: both packages, one suffix.
        Assert.That(pack, Is.EqualTo(new[]
        {
            "suffix=local.$(date -u +%Y%m%d%H%M%S)",
            $"dotnet pack src/TorchHooks -o {DocLines.PackageFolder} -p:VersionSuffix=$suffix",
            $"dotnet pack src/TorchHooks.NUnit -o {DocLines.PackageFolder} -p:VersionSuffix=$suffix",
        }));
        _root.RunDocLines(_project, install);
        File.Delete(Path.Combine(_project, "UnitTest1.cs"));   // the template's own test
        File.WriteAllText(Path.Combine(_project, "ModelTests.cs"), TestSource);
    }

    /// <summary>docs/snapshots.md's install lines: the pack block and the lines run in the test project's folder.</summary>
    internal static (string[] Pack, string[] Install) DocsLines()
    {
        var blocks = DocLines.Blocks("docs/snapshots.md", "## Add it to an NUnit project");
        Assert.That(blocks, Has.Count.EqualTo(2), "docs/snapshots.md's 'Add it to an NUnit project': a pack block and an install block");
        return (blocks[0], blocks[1]);
    }

    [OneTimeTearDown]
    public void Cleanup() => _root?.Dispose();

    private ProcessResult Dotnet(IReadOnlyDictionary<string, string?> environment, params string[] args) =>
        _root.Dotnet(_project, environment, args);

    [Test, Description("dotnet test in a user's NUnit project: the one-line assertion creates the snapshot, passes, then fails with the divergent path after a planted change")]
    public void One_line_assertion_guards_a_model_from_a_users_test_project()
    {
        var local = new Dictionary<string, string?> { ["CI"] = "false", ["TORCHHOOKS_UPDATE_SNAPSHOTS"] = "0", ["PLANTED_CHANGE"] = "0" };
        var build = Dotnet(local, "build");
        Assert.That(build.ExitCode, Is.EqualTo(0), build.Output);
        Assert.That(build.Output, Does.Not.Contain("NU1605").And.Not.Contain("NU1102"), "dotnet new nunit's NUnit takes TorchHooks.NUnit as it is");
        string csproj = File.ReadAllText(Path.Combine(_project, "ModelTests.csproj"));
        Assert.That(csproj, Does.Contain(@"<PackageReference Include=""NUnit"" Version=""4.3.2"" />"), "the template's own NUnit pin is kept");
        Assert.That(csproj, Does.Contain(@"<PackageReference Include=""TorchHooks.NUnit"" Version=""0.2.0-*"" />"));

        string snapshot = Path.Combine(_project, "__snapshots__", "ModelTests.mlp.json");
        var first = Dotnet(local, "test", "--no-build");
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Output);
        Assert.That(File.Exists(snapshot), Is.True, "created next to the test's source file");
        Assert.That(File.ReadAllText(snapshot), Does.Contain("\"path\": \"fc1\"").And.Contain("\"type\": \"Linear\""));
        Assert.That(first.StdOut, Does.Contain($"TorchHooks.NUnit: created snapshot \"mlp\" at {snapshot}: review and commit it."),
            "shown at dotnet test's normal verbosity (issue 20 item 8)");

        var planted = Dotnet(new Dictionary<string, string?>(local) { ["PLANTED_CHANGE"] = "1" }, "test", "--no-build");
        TestContext.Out.WriteLine(planted.StdOut);
        Assert.That(planted.ExitCode, Is.Not.EqualTo(0));
        Assert.That(planted.StdOut, Does.Contain("Failed Mlp_is_unchanged"));
        Assert.That(planted.StdOut, Does.Contain("First divergence in call order: fc1 (Linear), call 2 of 4")
            .And.Contain("field:    params").And.Contain("expected: 32").And.Contain("actual:   64"));
    }

    [Test, Description("docs/snapshots.md shows this project's test as written and the failure it produces")]
    public void Docs_show_this_test_and_its_failure()
    {
        string doc = File.ReadAllText(Path.Combine(BuildTestSupport.RepoRoot, "docs", "snapshots.md")).Replace("\r\n", "\n");
        Assert.That(doc, Does.Contain(TestSource.Replace("\r\n", "\n")));
        Assert.That(doc, Does.Contain("First divergence in call order: fc1 (Linear), call 2 of 4\n  field:    params\n  expected: 32\n  actual:   64"));
    }
}
