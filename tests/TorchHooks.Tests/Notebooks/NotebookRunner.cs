using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Commands;
using Microsoft.DotNet.Interactive.CSharp;
using Microsoft.DotNet.Interactive.Documents;
using Microsoft.DotNet.Interactive.Documents.Jupyter;
using Microsoft.DotNet.Interactive.Events;
using Microsoft.DotNet.Interactive.Formatting;

namespace TorchHooks.Tests.Notebooks;

/// <summary>What happened to one cell of a notebook run.</summary>
public sealed class CellRun
{
    /// <summary>1-based position among all cells, as a user counts them in the editor.</summary>
    public int CellNumber { get; init; }

    /// <summary>1-based position among the code cells.</summary>
    public int CodeCellNumber { get; init; }

    /// <summary>Package directives removed before submission (they would download packages).</summary>
    public List<string> StrippedDirectives { get; } = new();

    /// <summary>False when nothing was left to submit after stripping.</summary>
    public bool Submitted { get; set; }

    /// <summary>Outputs in the order the kernel produced them (stdout merged into runs).</summary>
    public List<InteractiveDocumentOutputElement> Outputs { get; } = new();

    /// <summary>Null when the cell succeeded; otherwise the error text.</summary>
    public string? Error { get; set; }

    /// <summary>Wall-clock time of the submission.</summary>
    public TimeSpan Elapsed { get; set; }

    /// <summary>All standard output of the cell, concatenated.</summary>
    public string StandardOutput => string.Concat(Outputs.OfType<TextElement>().Where(t => t.Name == "stdout").Select(t => t.Text));
}

/// <summary>The result of running one notebook.</summary>
public sealed class NotebookRun
{
    public NotebookRun(string path, InteractiveDocument document)
    {
        Path = path;
        Document = document;
    }

    /// <summary>The .ipynb file that was run.</summary>
    public string Path { get; }

    /// <summary>The parsed notebook; code cells get their outputs when <see cref="NotebookRunner.WriteOutputs"/> is used.</summary>
    public InteractiveDocument Document { get; }

    /// <summary>One entry per code cell that was reached (the run stops at the first failing cell).</summary>
    public List<CellRun> Cells { get; } = new();

    /// <summary>Total wall-clock time including kernel start-up.</summary>
    public TimeSpan Elapsed { get; set; }

    /// <summary>Time to parse the notebook and create the kernel.</summary>
    public TimeSpan Startup { get; set; }

    /// <summary>The first failing cell, if any.</summary>
    public CellRun? Failure => Cells.FirstOrDefault(c => c.Error is not null);

    /// <summary>A message naming the notebook, the cell and the error, or null on success.</summary>
    public string? FailureMessage
    {
        get
        {
            var failed = Failure;
            if (failed is null) return null;
            return $"{System.IO.Path.GetFileName(Path)}: cell {failed.CellNumber} (code cell {failed.CodeCellNumber}) failed:"
                   + Environment.NewLine + failed.Error;
        }
    }
}

/// <summary>
/// Runs .ipynb notebooks (Polyglot / .NET Interactive C# notebooks) headless and in-process:
/// each code cell is submitted in order to a <see cref="CSharpKernel"/>; a <c>CommandFailed</c> or
/// <c>ErrorProduced</c> event fails the cell, as does exceeding the per-cell timeout.
/// Package directives (<c>#r "nuget:</c>, <c>#i "nuget:</c>) are removed: the kernel gets the
/// TorchSharp and TorchHooks assemblies already loaded by the test host instead, so the suite never
/// downloads packages and uses the build's fixed native library.
/// </summary>
public static class NotebookRunner
{
    /// <summary>Set to 1 to write the captured outputs back into the notebooks.</summary>
    public const string WriteOutputsVariable = "TORCHHOOKS_WRITE_NOTEBOOK_OUTPUTS";

    /// <summary>The default per-cell time limit.</summary>
    public static readonly TimeSpan DefaultCellTimeout = TimeSpan.FromSeconds(120);

    private const string KernelName = "csharp";

    /// <summary>True when <see cref="WriteOutputsVariable"/> is set to 1.</summary>
    public static bool WriteOutputsRequested => Environment.GetEnvironmentVariable(WriteOutputsVariable) == "1";

    /// <summary>The folder holding Wrapper.sln, found by walking up from <paramref name="start"/>.</summary>
    public static DirectoryInfo FindRepositoryRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Wrapper.sln"))) return dir;
        }
        throw new DirectoryNotFoundException($"No folder containing Wrapper.sln above '{start}'. Run the tests from a checkout of the repository.");
    }

    /// <summary>notebooks/*.ipynb of the repository, sorted by name.</summary>
    public static IReadOnlyList<string> FindNotebooks(string start)
    {
        var folder = System.IO.Path.Combine(FindRepositoryRoot(start).FullName, "notebooks");
        if (!Directory.Exists(folder)) return Array.Empty<string>();
        return Directory.GetFiles(folder, "*.ipynb").OrderBy(p => p, StringComparer.Ordinal).ToArray();
    }

    /// <summary>
    /// Removes lines that start with <c>#r "nuget:</c> or <c>#i "nuget:</c> (leading blanks allowed).
    /// Every other line, other <c>#r</c> directives included, is kept.
    /// </summary>
    public static string StripPackageDirectives(string code, ICollection<string> stripped)
    {
        var lines = code.Replace("\r\n", "\n").Split('\n');
        var kept = new List<string>(lines.Length);
        foreach (var line in lines)
        {
            var t = line.TrimStart();
            if (t.StartsWith("#r \"nuget:", StringComparison.Ordinal) || t.StartsWith("#i \"nuget:", StringComparison.Ordinal))
                stripped.Add(line.Trim());
            else
                kept.Add(line);
        }
        return string.Join("\n", kept);
    }

    /// <summary>Assemblies of the test host that notebooks get instead of their package directives.</summary>
    public static IReadOnlyList<string> HostAssemblyPaths()
    {
        // Loading them here means the kernel's compilation binds to the very assemblies (and the
        // already-initialised native library) of this process.
        var torchSharp = typeof(TorchSharp.torch).Assembly.Location;
        var torchHooks = Assembly.Load(new AssemblyName("TorchHooks")).Location;
        return new[] { torchSharp, torchHooks };
    }

    /// <summary>Parses a notebook file.</summary>
    public static InteractiveDocument Parse(string path)
    {
        var json = File.ReadAllText(path);
        return Notebook.Parse(json, new KernelInfoCollection { new(KernelName) });
    }

    /// <summary>Runs every code cell of <paramref name="path"/> in a fresh kernel; stops at the first failing cell.</summary>
    public static async Task<NotebookRun> RunAsync(string path, TimeSpan? cellTimeout = null)
    {
        var timeout = cellTimeout ?? DefaultCellTimeout;
        var total = Stopwatch.StartNew();
        var run = new NotebookRun(path, Parse(path));

        var csharp = new CSharpKernel();
        csharp.AddAssemblyReferences(HostAssemblyPaths());
        using var kernel = new CompositeKernel("notebook-runner");
        kernel.Add(csharp, new[] { "c#", "C#" });
        kernel.DefaultKernelName = KernelName;
        run.Startup = total.Elapsed;

        var previousDirectory = Environment.CurrentDirectory;
        // Relative paths in a notebook are relative to the notebook, as in Jupyter and VS Code.
        Environment.CurrentDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        try
        {
            int codeCell = 0;
            for (int i = 0; i < run.Document.Elements.Count; i++)
            {
                var element = run.Document.Elements[i];
                if (!IsCSharp(element)) continue;
                codeCell++;
                var cell = new CellRun { CellNumber = i + 1, CodeCellNumber = codeCell };
                run.Cells.Add(cell);
                var code = StripPackageDirectives(element.Contents, cell.StrippedDirectives);
                if (string.IsNullOrWhiteSpace(code)) continue;
                cell.Submitted = true;
                await SubmitAsync(kernel, code, cell, timeout);
                if (cell.Error is not null) break;
            }
        }
        finally
        {
            Environment.CurrentDirectory = previousDirectory;
        }

        total.Stop();
        run.Elapsed = total.Elapsed;
        return run;
    }

    private static bool IsCSharp(InteractiveDocumentElement element) =>
        element.KernelName is "csharp" or "c#" or "C#";

    private static async Task SubmitAsync(Kernel kernel, string code, CellRun cell, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        using var cts = new CancellationTokenSource();
        var send = kernel.SendAsync(new SubmitCode(code, KernelName), cts.Token);
        var finished = await Task.WhenAny(send, Task.Delay(timeout));
        watch.Stop();
        cell.Elapsed = watch.Elapsed;
        if (finished != send)
        {
            cts.Cancel();
            cell.Error = $"Timed out after {timeout.TotalSeconds:0} s (the cell is still running; the kernel was abandoned).";
            return;
        }

        KernelCommandResult result;
        try
        {
            result = await send;
        }
        catch (Exception e)
        {
            cell.Error = e.ToString();
            return;
        }

        var errors = new List<string>();
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        void Flush()
        {
            if (stdout.Length > 0) { cell.Outputs.Add(new TextElement(stdout.ToString(), "stdout")); stdout.Clear(); }
            if (stderr.Length > 0) { cell.Outputs.Add(new TextElement(stderr.ToString(), "stderr")); stderr.Clear(); }
        }

        foreach (var e in result.Events)
        {
            switch (e)
            {
                case StandardOutputValueProduced o:
                    if (stderr.Length > 0) Flush();
                    stdout.Append(PlainText(o));
                    break;
                case StandardErrorValueProduced o:
                    if (stdout.Length > 0) Flush();
                    stderr.Append(PlainText(o));
                    break;
                case ErrorProduced o:
                    Flush();
                    errors.Add(o.Message);
                    cell.Outputs.Add(new ErrorElement("Error", o.Message, Array.Empty<string>()));
                    break;
                case ReturnValueProduced o:
                    Flush();
                    var returned = new ReturnValueElement { ExecutionOrder = cell.CodeCellNumber };
                    foreach (var (mime, value) in MimeBundle(o)) returned.Data[mime] = value;
                    cell.Outputs.Add(returned);
                    break;
                case DisplayedValueProduced o:
                    Flush();
                    cell.Outputs.Add(new DisplayElement(MimeBundle(o)));
                    break;
                case CommandFailed f:
                    Flush();
                    // Message already holds the exception text and stack trace, or the compiler diagnostics.
                    errors.Add(string.IsNullOrWhiteSpace(f.Message) ? f.Exception?.ToString() ?? "CommandFailed" : f.Message);
                    cell.Outputs.Add(new ErrorElement(f.Exception?.GetType().Name ?? "Error", f.Exception?.Message ?? f.Message,
                        f.Exception?.StackTrace?.Split('\n').Select(l => l.TrimEnd('\r')).ToArray() ?? Array.Empty<string>()));
                    break;
            }
        }
        Flush();
        if (errors.Count > 0) cell.Error = string.Join(Environment.NewLine, errors);
    }

    private static string PlainText(DisplayEvent e) =>
        e.FormattedValues.FirstOrDefault(v => v.MimeType == PlainTextFormatter.MimeType)?.Value
        ?? e.FormattedValues.FirstOrDefault()?.Value
        ?? e.Value?.ToString()
        ?? "";

    private static IDictionary<string, object> MimeBundle(DisplayEvent e)
    {
        var data = new Dictionary<string, object>();
        foreach (var v in e.FormattedValues.Where(v => !v.SuppressDisplay)) data[v.MimeType] = v.Value;
        // The kernel formats values as text/html only; Jupyter bundles should also carry
        // text/plain, so add the plain-text rendering of the same value.
        if (data.Count > 0 && !data.ContainsKey(PlainTextFormatter.MimeType) && e.Value is not null)
            data[PlainTextFormatter.MimeType] = Formatter.ToDisplayString(e.Value, PlainTextFormatter.MimeType);
        return data;
    }

    /// <summary>
    /// Puts the captured outputs of <paramref name="run"/> into its notebook file. Cell sources,
    /// markdown, notebook metadata (kernelspec <c>.net-csharp</c>) and cell metadata
    /// (<c>polyglot_notebook.kernelName</c>) are kept; only outputs and execution counts change.
    /// </summary>
    public static void WriteOutputs(NotebookRun run)
    {
        if (run.Failure is not null)
            throw new InvalidOperationException($"Not writing outputs of a failed run: {run.FailureMessage}");
        var byCell = run.Cells.ToDictionary(c => c.CellNumber);
        for (int i = 0; i < run.Document.Elements.Count; i++)
        {
            var element = run.Document.Elements[i];
            if (!IsCSharp(element)) continue;
            element.Outputs.Clear();
            if (byCell.TryGetValue(i + 1, out var cell))
            {
                element.Outputs.AddRange(cell.Outputs);
                element.ExecutionOrder = cell.CodeCellNumber;
            }
        }
        var json = Notebook.ToJupyterJson(run.Document, null);
        File.WriteAllText(run.Path, json.EndsWith('\n') ? json : json + "\n", new UTF8Encoding(false));
    }
}
