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
[Category("Slow")]   // runs every notebook in Jupyter: left out by --filter "TestCategory!=Slow" (README)
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

    [Test, Description("Issue 20 item 4: docs/notebooks.md's reader path installs the kernel spec where its JUPYTER_PATH line points, and the script runs the kernel the same way")]
    public void Reader_path_in_the_docs_is_what_the_script_runs()
    {
        var blocks = DocLines.Blocks("docs/notebooks.md", "### From a clone of this repository, step by step");
        Assert.That(blocks, Is.Not.Empty);
        var lines = blocks[0];
        Assert.That(lines[0], Is.EqualTo("bash .ci/notebooks --setup"));
        string export = lines.Single(l => l.StartsWith("export JUPYTER_PATH=", StringComparison.Ordinal));
        Assert.That(lines, Does.Contain("bash .ci/notebooks --feed"));
        string run = lines.Single(l => l.StartsWith("jupyter nbconvert ", StringComparison.Ordinal));
        Assert.That(run, Does.StartWith("jupyter nbconvert --to notebook --execute "));

        string script = File.ReadAllText(Path.Combine(BuildTestSupport.RepoRoot, ".ci", "notebooks"));
        Assert.That(script, Does.Contain("jupyter nbconvert --to notebook --execute").And.Contain("--ExecutePreprocessor.kernel_name=.net-csharp"));
        Assert.That(script, Does.Contain("export JUPYTER_PATH=\"$jupyter_dir\""));
        Assert.That(script, Does.Contain("#   " + export), "the script's header gives the docs' line");

        // The docs' line, evaluated as a reader's shell would, points at the kernel spec the script installed
        // (RunEveryNotebookInARealKernel ran it), and Jupyter finds the kernel there.
        var env = new Dictionary<string, string?> { ["TORCHHOOKS_TOOLS"] = null };
        var eval = BuildTestSupport.RunAsync("bash", new[] { "-c", export + "; echo \"$JUPYTER_PATH\"" }, BuildTestSupport.RepoRoot, environment: env).GetAwaiter().GetResult();
        string jupyterPath = eval.StdOut.Trim();
        if (Environment.GetEnvironmentVariable("TORCHHOOKS_TOOLS") is { Length: > 0 })
            Assert.Ignore("TORCHHOOKS_TOOLS moves the script's tools folder away from the docs' default.");
        string kernel = Path.Combine(jupyterPath, "kernels", ".net-csharp", "kernel.json");
        Assert.That(File.Exists(kernel), Is.True, kernel);
        string argv0 = (string)JsonNode.Parse(File.ReadAllText(kernel))!["argv"]![0]!;
        Assert.That(File.Exists(argv0), Is.True, $"the kernel spec starts {argv0}");
        var list = BuildTestSupport.RunAsync("/usr/bin/python3",
            new[] { "-c", "from jupyter_client.kernelspec import KernelSpecManager; print(KernelSpecManager().find_kernel_specs())" }, BuildTestSupport.RepoRoot,
            environment: new Dictionary<string, string?> { ["JUPYTER_PATH"] = jupyterPath }).GetAwaiter().GetResult();
        Assert.That(list.StdOut, Does.Contain(".net-csharp"), list.Output);
    }

    [Test, Description("Issue 20 item 5: --feed writes to the config it names (never a nuget.config above the current folder) and says how to undo it")]
    public void Feed_registers_in_the_named_config_and_says_how_to_undo_it()
    {
        using var dir = new BuildTestSupport.TempDir("torchhooks-feed-config");
        string cwd = dir.Sub("project");
        string nearby = Path.Combine(cwd, "nuget.config");
        File.WriteAllText(nearby, "<configuration />\n");
        string config = Path.Combine(dir.Sub("user"), "NuGet.Config");
        var r = BuildTestSupport.RunAsync("bash",
            new[] { Path.Combine(BuildTestSupport.RepoRoot, ".ci", "notebooks"), "--feed", "--feed-dir", LocalFeed.Folder, "--config", config },
            cwd, cleanMSBuildEnvironment: true, timeoutSeconds: 300).GetAwaiter().GetResult();
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Output);
        Assert.That(File.ReadAllText(nearby), Is.EqualTo("<configuration />\n"), "the nuget.config near the current folder is left alone");
        Assert.That(File.ReadAllText(config), Does.Contain("torchhooks-local").And.Contain(LocalFeed.Folder));
        Assert.That(r.StdErr, Does.Contain($"registered it as the NuGet source 'torchhooks-local' in {config}"));
        string undo = $"dotnet nuget remove source torchhooks-local --configfile {config}";
        Assert.That(r.StdErr, Does.Contain("to undo: " + undo));
        var undone = BuildTestSupport.RunAsync("bash", new[] { "-c", undo }, cwd, cleanMSBuildEnvironment: true).GetAwaiter().GetResult();
        Assert.That(undone.ExitCode, Is.EqualTo(0), undone.Output);
        Assert.That(File.ReadAllText(config), Does.Not.Contain("torchhooks-local"));
    }

    [Test, Description("Issue 20 item 6: the notebooks' text gives the feed command, and the committed outputs carry no CS1701 noise")]
    public void Notebook_text_gives_the_feed_command_and_outputs_have_no_CS1701_noise()
    {
        foreach (var path in FindNotebooks())
        {
            string text = File.ReadAllText(path);
            var name = Path.GetFileName(path);
            Assert.That(text, Does.Not.Contain("dotnet pack src/TorchHooks -o artifacts/nuget"), $"{name}: packing alone registers nothing; the text gives bash .ci/notebooks --feed");
            Assert.That(text, Does.Not.Contain("warning CS1701"), name);
        }
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
