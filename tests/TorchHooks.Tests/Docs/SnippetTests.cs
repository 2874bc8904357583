using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Docs;

/// <summary>
/// Every ```csharp block in README.md and docs/**/*.md compiles as written: each block is its own
/// program (top-level statements) or library, against the BCL, TorchSharp, TorchHooks (and, for NUnit tests, NUnit and TorchHooks.NUnit), with nothing
/// added. Blocks that are not C# (shell lines, notebook #r directives) are fenced as text or sh.
/// </summary>
[TestFixture]
public class SnippetTests
{
    public static IEnumerable<TestCaseData> Snippets()
    {
        string repo = BuildTestSupport.RepoRoot;
        var files = new[] { Path.Combine(repo, "README.md") }
            .Concat(Directory.GetFiles(Path.Combine(repo, "docs"), "*.md", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal));
        foreach (var file in files)
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                if (lines[i].Trim() != "```csharp" && lines[i].Trim() != "```cs") continue;
                int start = i + 1, end = start;
                while (end < lines.Length && lines[end].Trim() != "```") end++;
                string code = string.Join("\n", lines[start..end]);
                string name = $"{Path.GetRelativePath(repo, file)}:{start}";
                yield return new TestCaseData(name, code).SetArgDisplayNames(name);
                i = end;
            }
        }
    }

    private static readonly Lazy<MetadataReference[]> s_references = new(() =>
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator).ToList();
        paths.Add(typeof(TorchSharp.torch).Assembly.Location);
        paths.Add(typeof(ModuleExtensions).Assembly.Location);
        paths.Add(typeof(TorchHooks.NUnit.Matches).Assembly.Location);   // docs/snapshots.md: the NUnit companion
        paths.Add(typeof(Assert).Assembly.Location);
        paths.Add(typeof(TorchSharp.torchvision).Assembly.Location);   // README and docs/tracing.md use TorchVision's resnet18
        return paths.Where(p => p.Length > 0).Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
    });

    [Test]
    public void Docs_have_csharp_snippets() => Assert.That(Snippets().Count(), Is.GreaterThan(5));

    [TestCaseSource(nameof(Snippets))]
    public void Snippet_compiles(string where, string code)
    {
        var tree = CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest), path: where);
        bool program = tree.GetRoot().ChildNodes().OfType<GlobalStatementSyntax>().Any();
        var compilation = CSharpCompilation.Create("Snippet", new[] { tree }, s_references.Value,
            new CSharpCompilationOptions(program ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary,
                nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.That(errors, Is.Empty, $"{where} does not compile as written:\n" + string.Join("\n", errors) + "\n---\n" + code);
    }
}
