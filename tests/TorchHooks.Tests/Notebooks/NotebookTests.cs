using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using NUnit.Framework;
using TorchHooks.Tests.Build;
using TorchHooks.Tests.Packaging;

namespace TorchHooks.Tests.Notebooks;

/// <summary>
/// Runs every notebooks/*.ipynb in a real Jupyter .NET (C#) kernel through <c>.ci/notebooks</c>, as a reader
/// would: the first cell restores TorchHooks (freshly packed, <see cref="LocalFeed"/>) and the libtorch runtime
/// package with <c>#r "nuget: ..."</c>, and the package's notebook extension makes the native library load. One
/// test case per notebook; a failure names the notebook, the cell and the error (see docs/notebooks.md).
/// </summary>
[TestFixture]
[NonParallelizable]
public class NotebookTests
{
    private static JsonArray? s_summary;
    private static string? s_runFailure;

    public static IEnumerable<TestCaseData> Notebooks() =>
        FindNotebooks().Select(path => new TestCaseData(Path.GetFileName(path)).SetArgDisplayNames(Path.GetFileName(path)));

    private static IEnumerable<string> FindNotebooks()
    {
        string dir = Path.Combine(BuildTestSupport.RepoRoot, "notebooks");
        return Directory.GetFiles(dir, "*.ipynb").OrderBy(p => p, StringComparer.Ordinal);
    }

    [OneTimeSetUp]
    public void RunEveryNotebookInARealKernel()
    {
        string summary = Path.Combine(Path.GetTempPath(), $"torchhooks-notebooks-{Guid.NewGuid():N}.json");
        try
        {
            var r = BuildTestSupport.RunAsync("bash",
                new[] { Path.Combine(BuildTestSupport.RepoRoot, ".ci", "notebooks"), "--feed-dir", LocalFeed.Folder, "--summary", summary },
                BuildTestSupport.RepoRoot, cleanMSBuildEnvironment: true, timeoutSeconds: 1200).GetAwaiter().GetResult();
            TestContext.Progress.WriteLine(r.StdErr);
            if (File.Exists(summary)) s_summary = JsonNode.Parse(File.ReadAllText(summary))!.AsArray();
            else s_runFailure = $".ci/notebooks wrote no summary (exit code {r.ExitCode}):\n{r.Output}";
        }
        finally
        {
            if (File.Exists(summary)) File.Delete(summary);
        }
    }

    [TestCaseSource(nameof(Notebooks))]
    public void Notebook_runs_in_a_real_Jupyter_kernel(string notebook)
    {
        Assert.That(s_runFailure, Is.Null);
        var entry = s_summary!.FirstOrDefault(e => (string?)e!["notebook"] == notebook);
        Assert.That(entry, Is.Not.Null, $"{notebook} was not run");
        var errors = entry!["errors"]!.AsArray().Select(e => (string?)e).ToList();
        TestContext.Out.WriteLine($"{notebook}: {(int)entry["seconds"]!} s in the kernel");
        Assert.That(errors, Is.Empty, $"notebooks/{notebook}:\n" + string.Join("\n", errors));
        Assert.That((bool)entry["ok"]!, Is.True);
    }

    [Test]
    public void Every_notebook_declares_the_csharp_kernel()
    {
        foreach (var path in FindNotebooks())
        {
            var json = JsonNode.Parse(File.ReadAllText(path))!;
            var name = Path.GetFileName(path);
            Assert.That((string?)json["metadata"]?["kernelspec"]?["name"], Is.EqualTo(".net-csharp"), name);
            var codeCells = json["cells"]!.AsArray().Where(c => (string?)c!["cell_type"] == "code").ToList();
            Assert.That(codeCells, Is.Not.Empty, name);
            foreach (var cell in codeCells)
                Assert.That((string?)cell!["metadata"]?["polyglot_notebook"]?["kernelName"], Is.EqualTo("csharp"), name);
        }
    }

    [Test]
    public void Every_notebook_loads_TorchHooks_and_the_runtime_as_a_reader_does()
    {
        foreach (var path in FindNotebooks())
        {
            var json = JsonNode.Parse(File.ReadAllText(path))!;
            var name = Path.GetFileName(path);
            var first = json["cells"]!.AsArray().First(c => (string?)c!["cell_type"] == "code")!;
            string source = string.Concat(first["source"]!.AsArray().Select(l => (string?)l));
            var lines = source.Split('\n').Select(l => l.Trim()).ToList();
            Assert.That(lines, Does.Contain("#r \"nuget: TorchHooks, 0.2.0-*\""), name);
            Assert.That(lines, Does.Contain("#r \"nuget: libtorch-cpu-linux-x64, 2.10.0\""), name);
            // A relative #i source fails in real kernels ("Invalid URI"); TorchSharp-cpu pulls three operating systems.
            Assert.That(source, Does.Not.Contain("#i \""), name);
            Assert.That(source, Does.Not.Contain("TorchSharp-cpu"), name);
            // The committed outputs come from a real run: the package's extension announced itself.
            Assert.That(first["outputs"]!.ToJsonString(), Does.Contain("interactive-extensions/dotnet/extension.dib"), name);
        }
    }
}
