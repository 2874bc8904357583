using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// TorchHooks as a user gets it: fresh projects in a temporary folder outside the repository (no
/// Directory.Build.*, no Directory.Packages.props), made by <c>dotnet new console</c> / <c>classlib</c> and the
/// install lines of README.md's "Use it in your project", read from README.md and run as written (the freshly
/// packed feed stands for the README's package folder): the local folder source in the workspace's nuget.config,
/// TorchHooks at the floating version, TorchSharp and libtorch-cpu-linux-x64 from the machine's default source. They build,
/// run a hooked model on this machine with no manual step, and a project that references the first one
/// gets the native fix too. NuGet restores into a private packages folder (the global cache is read as a
/// fallback folder only), so the test leaves nothing in the user's NuGet cache.
/// </summary>
[TestFixture]
[Category("Slow")]   // packs and builds users' projects: left out by --filter "TestCategory!=Slow" (README)
[NonParallelizable]
public class ConsumerTests
{
    private UserWorkspace _root = null!;
    private string _packages = null!;
    private string _globalPackages = null!;
    private ProcessResult _libBuild = null!;
    private ProcessResult _appBuild = null!;

    private const string AppProgram = @"using System;
using TorchHooks;
using TorchSharp;
using static TorchSharp.torch;

if (args.Length > 0 && args[0] == ""ensure"")
    Console.WriteLine(""native: "" + NativeLoading.EnsureTorchSharpLoaded());

var model = new Net();
var m = model.WithHooks();
int fired = 0;
using var h = m[""child""].register_forward_hook((mod, x, y) => { fired++; return null; });
using var y = m.call(torch.ones(3, 4));
Console.WriteLine($""shape={string.Join(""x"", y.shape)} child hook fired={fired}"");
var child = ((Net)m.Unwrap()).Child;
using (var z = child.forward(torch.ones(1, 4)))   // planted: TH0001
    Console.WriteLine($""child.forward skips the child's hooks: fired={fired}"");

sealed class Net : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> child = nn.Linear(4, 2);
    public Net() : base(nameof(Net)) { RegisterComponents(); }
    public nn.Module<Tensor, Tensor> Child => child;
    public override Tensor forward(Tensor x) => child.call(x);
}
";

    private const string LibSource = @"using TorchHooks;
using TorchSharp;
using static TorchSharp.torch;

namespace Lib;

/// <summary>A library that wraps models for its callers.</summary>
public static class Models
{
    /// <summary>A hooked MLP whose hidden activation is counted.</summary>
    public static (HookedModule<Tensor, Tensor> Model, System.Func<int> Count) CountingMlp()
    {
        int count = 0;
        var m = nn.Sequential((""fc1"", nn.Linear(4, 8)), (""act"", nn.ReLU()), (""fc2"", nn.Linear(8, 2))).WithHooks();
        m[""act""].register_forward_hook((mod, x, y) => { count++; return null; });
        return (m, () => count);
    }
}
";

    private const string App2Program = @"using System;
using TorchSharp;
var (m, count) = Lib.Models.CountingMlp();
using var y = m.call(torch.ones(5, 4));
Console.WriteLine($""through Lib: shape={string.Join(""x"", y.shape)} act hook fired={count()}"");
";

    /// <summary>README.md's install lines: the pack line, and the lines run in the user's project (or solution) folder.</summary>
    internal static (string[] Pack, string[] Install) ReadmeLines()
    {
        var blocks = DocLines.Blocks("README.md", "## Use it in your project");
        Assert.That(blocks, Has.Count.EqualTo(2), "README's 'Use it in your project': a pack block and an install block");
        return (blocks[0], blocks[1]);
    }

    [OneTimeSetUp]
    public void CreateAndBuildConsumers()
    {
        _root = new UserWorkspace("torchhooks-consumer", feedConfig: false);
        _packages = _root.Packages;
        _globalPackages = _root.GlobalPackages;
        var (pack, install) = ReadmeLines();
        // The pack line is what LocalFeed ran (with --no-build and one suffix for both packages).
        Assert.That(pack, Is.EqualTo(new[] { $"dotnet pack src/TorchHooks -o {DocLines.PackageFolder}" }));
        // The source lines make the workspace (the solution's folder) see the feed; the package lines go into each project.
        _root.RunDocLines(_root.Path, install.Where(l => !l.StartsWith("dotnet add package", StringComparison.Ordinal)));
        NewProject("App", "console", AppProgram, "Program.cs", install);
        NewProject("Lib", "classlib", LibSource, "Models.cs", install);
        WriteProject("App2", "Exe", App2Program, "Program.cs", torchHooks: false, runtime: true, projectReference: "../Lib/Lib.csproj");

        _appBuild = Dotnet("build", "App/App.csproj");
        _libBuild = Dotnet("build", "App2/App2.csproj");
    }

    [OneTimeTearDown]
    public void Cleanup() => _root?.Dispose();

    /// <summary>A project made by <c>dotnet new</c>, given its packages by README's <c>dotnet add package</c> lines.</summary>
    private void NewProject(string name, string template, string source, string file, string[] install)
    {
        string dir = _root.Sub(name);
        _root.RunDocLines(dir, new[] { $"dotnet new {template} -n {name} -o ." });
        foreach (var f in Directory.GetFiles(dir, "*.cs")) File.Delete(f);
        File.WriteAllText(Path.Combine(dir, file), source);
        _root.RunDocLines(dir, install.Where(l => l.StartsWith("dotnet add package", StringComparison.Ordinal)));
    }

    private void WriteProject(string name, string outputType, string source, string file, bool torchHooks, bool runtime, string? projectReference = null)
    {
        string dir = _root.Sub(name);
        var refs = new List<string>();
        if (torchHooks) refs.Add($@"    <PackageReference Include=""TorchHooks"" Version=""{LocalFeed.Version}"" />");
        if (runtime) refs.Add(@"    <PackageReference Include=""libtorch-cpu-linux-x64"" Version=""2.10.0"" />");
        if (projectReference != null) refs.Add($@"    <ProjectReference Include=""{projectReference}"" />");
        File.WriteAllText(Path.Combine(dir, name + ".csproj"), $@"<Project Sdk=""Microsoft.NET.Sdk"">
  <PropertyGroup>
    <OutputType>{outputType}</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <GenerateDocumentationFile>{(outputType == "Library" ? "true" : "false")}</GenerateDocumentationFile>
  </PropertyGroup>
  <ItemGroup>
{string.Join(Environment.NewLine, refs)}
  </ItemGroup>
</Project>
");
        File.WriteAllText(Path.Combine(dir, file), source);
    }

    private ProcessResult Dotnet(params string[] args) => _root.Dotnet(_root.Path, null, args);

    private ProcessResult RunApp(string name, params string[] args)
    {
        string dll = Path.Combine(_root.Path, name, "bin", "Debug", "net10.0", name + ".dll");
        var all = new List<string> { dll };
        all.AddRange(args);
        return BuildTestSupport.RunAsync(BuildTestSupport.DotNet, all, _root.Path, timeoutSeconds: 120,
            environment: new Dictionary<string, string?> { ["XDG_CACHE_HOME"] = _root.Sub("cache") }).GetAwaiter().GetResult();
    }

    private static IEnumerable<string> FixLines(ProcessResult build) =>
        build.StdOut.Split('\n').Where(l => l.Contains("TorchHooks:")).Select(l => l.Trim());

    [Test, Description("A console app outside the repo builds against the packed TorchHooks and runs a hooked model with no manual step")]
    public void App_builds_and_runs_a_hooked_model()
    {
        Assert.That(_appBuild.ExitCode, Is.EqualTo(0), _appBuild.Output);
        var run = RunApp("App");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Output);
        Assert.That(run.StdOut, Does.Contain("shape=3x2 child hook fired=1"));
        Assert.That(run.StdOut, Does.Contain("child.forward skips the child's hooks: fired=1"));
    }

    [Test, Description("The package's buildTransitive step fixes the app's own output copy of libLibTorchSharp.so, logging one line")]
    public void Build_step_fixes_the_output_copy_only()
    {
        Assert.That(_appBuild.ExitCode, Is.EqualTo(0), _appBuild.Output);
        bool systemLacks = NativeLoading.SystemLacksRequiredVersion(out _);
        var lines = FixLines(_appBuild).ToList();
        Assert.That(lines, Has.Count.EqualTo(1), _appBuild.StdOut);
        Assert.That(lines[0], Does.Contain(systemLacks ? "marked its need for GLIBCXX_3.4.32 weak" : "left as shipped"));
        string output = Path.Combine(_root.Path, "App", "bin", "Debug", "net10.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.That(lines[0], Does.Contain("libLibTorchSharp.so"));
        Assert.That(global::TorchHooks.Build.ElfVersionNeeds.ReadNeeds(output).Single(n => n.Version == "GLIBCXX_3.4.32").IsWeak, Is.EqualTo(systemLacks));
        // The package folders (private and the user's cache) keep the library as shipped.
        foreach (var shipped in Directory.GetFiles(_packages, "libLibTorchSharp.so", SearchOption.AllDirectories)
                     .Concat(Directory.GetFiles(Path.Combine(_globalPackages, "torchsharp"), "libLibTorchSharp.so", SearchOption.AllDirectories)))
            Assert.That(global::TorchHooks.Build.ElfVersionNeeds.ReadNeeds(shipped).Single(n => n.Version == "GLIBCXX_3.4.32").IsWeak, Is.False, shipped);
    }

    [Test, Description("A project that gets TorchHooks only through another project gets the native fix too (buildTransitive)")]
    public void Transitive_consumer_gets_the_fix_and_runs()
    {
        Assert.That(_libBuild.ExitCode, Is.EqualTo(0), _libBuild.Output);
        Assert.That(FixLines(_libBuild).ToList(), Has.Count.EqualTo(1), _libBuild.StdOut);
        string output = Path.Combine(_root.Path, "App2", "bin", "Debug", "net10.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.That(global::TorchHooks.Build.ElfVersionNeeds.ReadNeeds(output).Single(n => n.Version == "GLIBCXX_3.4.32").IsWeak,
            Is.EqualTo(NativeLoading.SystemLacksRequiredVersion(out _)));
        var run = RunApp("App2");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Output);
        Assert.That(run.StdOut, Does.Contain("through Lib: shape=5x2 act hook fired=1"));
    }

    [Test, Description("TH0001 from the package's analyzer: a planted child.forward(x) is reported at build time")]
    public void Analyzer_reports_TH0001_on_a_planted_forward_call()
    {
        Assert.That(_appBuild.ExitCode, Is.EqualTo(0), _appBuild.Output);
        var warnings = _appBuild.StdOut.Split('\n').Where(l => l.Contains("warning TH0001")).Distinct().ToList();
        Assert.That(warnings, Is.Not.Empty, _appBuild.StdOut);
        int line = AppProgram.Split('\n').ToList().FindIndex(l => l.Contains("planted: TH0001")) + 1;
        Assert.That(warnings[0], Does.Contain($"Program.cs({line},"));
    }

    [Test, Description("Without the build step (opted out), NativeLoading.EnsureTorchSharpLoaded loads a load-fixed copy from the per-user cache; with the runtime fix off too, the error names GLIBCXX_3.4.32 and the fix")]
    public void Runtime_fix_and_its_error_where_no_build_step_ran()
    {
        if (!NativeLoading.SystemLacksRequiredVersion(out var system))
            Assert.Ignore($"{system} provides GLIBCXX_3.4.32: there is nothing to fix on this machine.");
        var build = Dotnet("build", "App/App.csproj", "-p:TorchHooksFixNativeLoad=false", "-o", Path.Combine(_root.Path, "optout"));
        Assert.That(build.ExitCode, Is.EqualTo(0), build.Output);
        Assert.That(FixLines(build), Is.Empty, "the opt-out must leave the output copy alone");
        string dll = Path.Combine(_root.Path, "optout", "App.dll");
        string cache = _root.Sub("cache-optout");

        var fixedRun = BuildTestSupport.RunAsync(BuildTestSupport.DotNet, new[] { dll, "ensure" }, _root.Path, timeoutSeconds: 120,
            environment: new Dictionary<string, string?> { ["XDG_CACHE_HOME"] = cache }).GetAwaiter().GetResult();
        Assert.That(fixedRun.ExitCode, Is.EqualTo(0), fixedRun.Output);
        Assert.That(fixedRun.StdOut, Does.Contain("native: LoadedFixedCopy"));
        Assert.That(fixedRun.StdOut, Does.Contain(Path.Combine(cache, "torchhooks", "native")));
        Assert.That(fixedRun.StdOut, Does.Contain("shape=3x2 child hook fired=1"));

        var refused = BuildTestSupport.RunAsync(BuildTestSupport.DotNet, new[] { dll, "ensure" }, _root.Path, timeoutSeconds: 120,
            environment: new Dictionary<string, string?>
            {
                ["XDG_CACHE_HOME"] = cache, [NativeLoading.OptOutVariable] = "false",
                // TorchSharp's own fallback would copy ~500 MB of libtorch next to the app; give it an empty package folder.
                ["NUGET_PACKAGES"] = _root.Sub("no-packages"),
            }).GetAwaiter().GetResult();
        Assert.That(refused.ExitCode, Is.Not.EqualTo(0));
        Assert.That(refused.StdErr, Does.Contain("GLIBCXX_3.4.32").And.Contain("not a missing package").And.Contain("reference the TorchHooks package"));
    }

    [Test, Description("README's lines give a floating version, so the newest pack is taken (issue 20 item 1: an exact pin never updated)")]
    public void Readme_lines_reference_the_newest_pack_at_a_floating_version()
    {
        string csproj = File.ReadAllText(Path.Combine(_root.Path, "App", "App.csproj"));
        Assert.That(csproj, Does.Contain(@"<PackageReference Include=""TorchHooks"" Version=""0.2.0-*"" />"));
        string assets = File.ReadAllText(Path.Combine(_root.Path, "App", "obj", "project.assets.json"));
        Assert.That(assets, Does.Contain($"\"TorchHooks/{LocalFeed.Version}\""), "resolved to the pack of this run");
        Assert.That(File.ReadAllText(Path.Combine(_root.Path, "nuget.config")), Does.Contain(LocalFeed.Folder).And.Not.Contain("<clear"),
            "the source is in the workspace's config, and the machine's sources stay");
    }

    [Test, Description("Nothing of the test lands in the user's NuGet cache: TorchHooks was restored into the private folder")]
    public void Packed_version_lands_only_in_the_private_packages_folder()
    {
        Assert.That(Directory.Exists(Path.Combine(_packages, "torchhooks", LocalFeed.Version.ToLowerInvariant())), Is.True);
        Assert.That(Directory.Exists(Path.Combine(_globalPackages, "torchhooks", LocalFeed.Version.ToLowerInvariant())), Is.False);
    }
}
