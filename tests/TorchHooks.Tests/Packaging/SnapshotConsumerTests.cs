using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// TorchHooks.NUnit as a user gets it: an NUnit test project in a temporary folder outside the repository
/// references the packed TorchHooks.NUnit (which brings TorchHooks and NUnit) from a local folder source, guards a
/// small model with the one-line assertion, and runs `dotnet test`: the first run creates the snapshot and passes,
/// a planted change (a wider hidden layer, switched by an environment variable so the project is built once) fails
/// naming the first divergent module. One restore+build, two test runs (CI=true on a missing snapshot is covered
/// in Snapshots/SnapshotTests.cs).
/// NuGet restores into a private packages folder (the user's cache is only a fallback folder).
/// </summary>
[TestFixture]
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
        _root = new UserWorkspace("torchhooks-nunit-consumer");
        _project = _root.Sub("ModelTests");
        File.WriteAllText(Path.Combine(_project, "ModelTests.csproj"), $@"<Project Sdk=""Microsoft.NET.Sdk"">
  <PropertyGroup>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <IsPackable>false</IsPackable>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include=""TorchHooks.NUnit"" Version=""{LocalFeed.Version}"" />
    <PackageReference Include=""libtorch-cpu-linux-x64"" Version=""2.10.0"" />
    <PackageReference Include=""NUnit3TestAdapter"" Version=""5.2.0"" />
    <PackageReference Include=""Microsoft.NET.Test.Sdk"" Version=""18.0.1"" />
  </ItemGroup>
</Project>
");
        File.WriteAllText(Path.Combine(_project, "ModelTests.cs"), TestSource);
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

        string snapshot = Path.Combine(_project, "__snapshots__", "ModelTests.mlp.json");
        var first = Dotnet(local, "test", "--no-build");
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Output);
        Assert.That(File.Exists(snapshot), Is.True, "created next to the test's source file");
        Assert.That(File.ReadAllText(snapshot), Does.Contain("\"path\": \"fc1\"").And.Contain("\"type\": \"Linear\""));

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
