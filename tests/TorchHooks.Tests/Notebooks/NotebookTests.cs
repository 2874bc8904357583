using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using System.Threading.Tasks;
using NUnit.Framework;

namespace TorchHooks.Tests.Notebooks;

/// <summary>
/// Executes every notebooks/*.ipynb headless, cell by cell. With
/// TORCHHOOKS_WRITE_NOTEBOOK_OUTPUTS=1 the captured outputs are written back into the notebooks
/// (see docs/notebooks.md).
/// </summary>
[TestFixture]
[NonParallelizable] // cells write to Console and change the current directory while they run
public class NotebookTests
{
    private static readonly string TestDirectory = AppContext.BaseDirectory;

    public static IEnumerable<TestCaseData> Notebooks() =>
        NotebookRunner.FindNotebooks(TestDirectory)
            .Select(path => new TestCaseData(path).SetArgDisplayNames(Path.GetFileName(path)));

    [TestCaseSource(nameof(Notebooks))]
    public async Task Notebook_runs_without_errors(string path)
    {
        var run = await NotebookRunner.RunAsync(path);

        foreach (var cell in run.Cells)
        {
            foreach (var directive in cell.StrippedDirectives)
                TestContext.Out.WriteLine($"cell {cell.CellNumber}: skipped {directive} (the test host's TorchSharp/TorchHooks assemblies are referenced instead)");
            TestContext.Out.WriteLine($"cell {cell.CellNumber}: {(cell.Submitted ? $"{cell.Elapsed.TotalSeconds:0.00} s" : "nothing left to run")}");
        }
        TestContext.Out.WriteLine($"{Path.GetFileName(path)}: {run.Cells.Count} code cells in {run.Elapsed.TotalSeconds:0.00} s (kernel start-up {run.Startup.TotalSeconds:0.00} s)");

        Assert.That(run.FailureMessage, Is.Null);
        Assert.That(run.Cells.Count(c => c.Submitted), Is.GreaterThan(0), $"{Path.GetFileName(path)} has no code to run");

        if (NotebookRunner.WriteOutputsRequested)
        {
            NotebookRunner.WriteOutputs(run);
            TestContext.Out.WriteLine($"wrote outputs into {path}");
        }
    }

    [Test]
    public void Notebooks_folder_is_found_and_has_notebooks()
    {
        var root = NotebookRunner.FindRepositoryRoot(TestDirectory);
        Assert.That(File.Exists(Path.Combine(root.FullName, "Wrapper.sln")), Is.True);
        Assert.That(NotebookRunner.FindNotebooks(TestDirectory).Select(Path.GetFileName),
            Does.Contain("01-call-vs-forward.ipynb"));
    }

    [Test]
    public void Every_notebook_declares_the_csharp_kernel()
    {
        foreach (var path in NotebookRunner.FindNotebooks(TestDirectory))
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
    public void Package_directives_are_stripped_and_recorded_other_lines_kept()
    {
        var stripped = new List<string>();
        var code = "#r \"nuget: TorchSharp-cpu, 0.107.0\"\r\n  #i \"nuget: ../artifacts/nuget\"\n#r \"nuget: TorchHooks, 0.1.0\"\n#r \"System.Numerics\"\nusing TorchSharp;";

        var result = NotebookRunner.StripPackageDirectives(code, stripped);

        Assert.That(result, Is.EqualTo("#r \"System.Numerics\"\nusing TorchSharp;"));
        Assert.That(stripped, Is.EqualTo(new[]
        {
            "#r \"nuget: TorchSharp-cpu, 0.107.0\"",
            "#i \"nuget: ../artifacts/nuget\"",
            "#r \"nuget: TorchHooks, 0.1.0\"",
        }));
    }

    [Test]
    public async Task A_failing_cell_is_reported_with_notebook_name_cell_number_and_error_and_outputs_are_written()
    {
        var dir = Directory.CreateTempSubdirectory("torchhooks-nb-");
        try
        {
            var good = Path.Combine(dir.FullName, "good.ipynb");
            File.WriteAllText(good, MakeNotebook(
                ("markdown", "# title"),
                ("code", "#r \"nuget: TorchSharp-cpu, 0.107.0\"\nusing System;\nusing TorchSharp;\nConsole.WriteLine(\"hello\");\nConsole.WriteLine(torch.ones(2, 3).sum().item<float>());\n" +
                    // the notebook must bind to the host's TorchSharp, not load a second copy
                    "Console.WriteLine(System.Runtime.Loader.AssemblyLoadContext.GetLoadContext(typeof(torch).Assembly)!.Name);"),
                ("code", "#r \"nuget: TorchSharp-cpu, 0.107.0\""),
                ("code", "1 + 2")));
            var bad = Path.Combine(dir.FullName, "bad.ipynb");
            File.WriteAllText(bad, MakeNotebook(
                ("code", "var a = 1;"),
                ("markdown", "text"),
                ("code", "throw new InvalidOperationException(\"boom from the notebook\");"),
                ("code", "Console.WriteLine(\"never\");")));

            var broken = Path.Combine(dir.FullName, "broken.ipynb");
            File.WriteAllText(broken, MakeNotebook(("code", "using TorchSharp;"), ("code", "var t = torch.no_such_function();")));

            var brokenRun = await NotebookRunner.RunAsync(broken);
            Assert.That(brokenRun.FailureMessage, Does.StartWith("broken.ipynb: cell 2 (code cell 2) failed:"));
            Assert.That(brokenRun.FailureMessage, Does.Contain("CS0117").And.Contain("no_such_function"));

            var badRun = await NotebookRunner.RunAsync(bad);
            TestContext.Out.WriteLine(brokenRun.FailureMessage);
            TestContext.Out.WriteLine(badRun.FailureMessage);
            Assert.That(badRun.FailureMessage, Does.StartWith("bad.ipynb: cell 3 (code cell 2) failed:"));
            Assert.That(badRun.FailureMessage, Does.Contain("boom from the notebook"));
            Assert.That(badRun.Cells, Has.Count.EqualTo(2), "the run stops at the failing cell");
            Assert.That(() => NotebookRunner.WriteOutputs(badRun), Throws.InvalidOperationException);

            var goodRun = await NotebookRunner.RunAsync(good);
            Assert.That(goodRun.FailureMessage, Is.Null);
            Assert.That(goodRun.Cells[0].StrippedDirectives, Is.EqualTo(new[] { "#r \"nuget: TorchSharp-cpu, 0.107.0\"" }));
            Assert.That(goodRun.Cells[0].StandardOutput.Replace("\r\n", "\n"), Is.EqualTo("hello\n6\nDefault\n"));
            Assert.That(goodRun.Cells[1].Submitted, Is.False);

            NotebookRunner.WriteOutputs(goodRun);
            var written = JsonNode.Parse(File.ReadAllText(good))!;
            Assert.That((string?)written["metadata"]?["kernelspec"]?["name"], Is.EqualTo(".net-csharp"));
            var cells = written["cells"]!.AsArray();
            Assert.That(cells, Has.Count.EqualTo(4));
            Assert.That((string?)cells[0]!["cell_type"], Is.EqualTo("markdown"));
            Assert.That((string?)cells[1]!["metadata"]?["polyglot_notebook"]?["kernelName"], Is.EqualTo("csharp"));
            Assert.That(string.Concat(cells[1]!["source"]!.AsArray().Select(l => (string?)l)), Does.Contain("#r \"nuget: TorchSharp-cpu, 0.107.0\""),
                "the package directive stays in the notebook");
            var stream = cells[1]!["outputs"]!.AsArray().Single()!;
            Assert.That((string?)stream["output_type"], Is.EqualTo("stream"));
            Assert.That(string.Concat(stream["text"]!.AsArray().Select(l => (string?)l)), Is.EqualTo("hello\n6\nDefault\n"));
            var result = cells[3]!["outputs"]!.AsArray().Single()!;
            Assert.That((string?)result["output_type"], Is.EqualTo("execute_result"));
            Assert.That(string.Concat(result["data"]!["text/plain"]!.AsArray().Select(l => (string?)l)), Is.EqualTo("3"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_hung_cell_fails_with_a_timeout()
    {
        var dir = Directory.CreateTempSubdirectory("torchhooks-nb-");
        try
        {
            var path = Path.Combine(dir.FullName, "hang.ipynb");
            File.WriteAllText(path, MakeNotebook(("code", "System.Threading.Thread.Sleep(3000);")));
            var run = await NotebookRunner.RunAsync(path, TimeSpan.FromMilliseconds(500));
            Assert.That(run.FailureMessage, Does.StartWith("hang.ipynb: cell 1 (code cell 1) failed:"));
            Assert.That(run.FailureMessage, Does.Contain("Timed out"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static string MakeNotebook(params (string Type, string Source)[] cells)
    {
        var array = new JsonArray();
        foreach (var (type, source) in cells)
        {
            var cell = new JsonObject
            {
                ["cell_type"] = type,
                ["metadata"] = type == "code"
                    ? new JsonObject { ["polyglot_notebook"] = new JsonObject { ["kernelName"] = "csharp" } }
                    : new JsonObject(),
                ["source"] = source,
            };
            if (type == "code")
            {
                cell["execution_count"] = null;
                cell["outputs"] = new JsonArray();
            }
            array.Add(cell);
        }
        var notebook = new JsonObject
        {
            ["cells"] = array,
            ["metadata"] = new JsonObject
            {
                ["kernelspec"] = new JsonObject { ["display_name"] = ".NET (C#)", ["language"] = "C#", ["name"] = ".net-csharp" },
                ["polyglot_notebook"] = new JsonObject
                {
                    ["kernelInfo"] = new JsonObject
                    {
                        ["defaultKernelName"] = "csharp",
                        ["items"] = new JsonArray(new JsonObject { ["aliases"] = new JsonArray(), ["name"] = "csharp" }),
                    },
                },
            },
            ["nbformat"] = 4,
            ["nbformat_minor"] = 5,
        };
        return notebook.ToJsonString();
    }
}
