using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;
using TorchSharp;

namespace TorchHooks.Tests.Native;

/// <summary>
/// Every native function TorchHooks binds (every static <see cref="NativeSymbol"/> field of the library), checked
/// against the export tables of the runtime packages users install, per OS: libtorch-cpu-linux-x64, -win-x64 and
/// -osx-arm64 2.10.0 and TorchSharp 0.107.0's runtimes/*/native, as Goldens/native/make_exports.py read them
/// (ELF, PE and Mach-O tables). Windows and macOS can't be run here; their names are checked this way.
/// </summary>
[TestFixture]
public class NativeExportTests
{
    private static JsonElement Golden => Goldens.Load("native", "exports.json");

    /// <summary>Every NativeSymbol field declared anywhere in TorchHooks, with its declaring member's name.</summary>
    internal static IReadOnlyList<(string Member, NativeSymbol Symbol)> BoundSymbols() =>
        typeof(NativeSymbol).Assembly.GetTypes()
            .SelectMany(t => t.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Where(f => f.FieldType == typeof(NativeSymbol))
            .Select(f => ($"{f.DeclaringType!.Name}.{f.Name}", (NativeSymbol)f.GetValue(null)!))
            .ToList();

    private static string GoldenLibrary(NativeLibraryId id) => id == NativeLibraryId.TorchCpu ? "torch_cpu" : "LibTorchSharp";

    /// <summary>What is wrong with <paramref name="symbols"/> against the export tables: one line per symbol and OS.</summary>
    internal static List<string> Problems(JsonElement golden, IEnumerable<(string Member, NativeSymbol Symbol)> symbols)
    {
        var problems = new List<string>();
        foreach (var runtime in golden.GetProperty("runtimes").EnumerateObject())
        {
            bool windows = runtime.Name.StartsWith("win", StringComparison.Ordinal);
            foreach (var (member, symbol) in symbols)
            {
                var lib = runtime.Value.GetProperty(GoldenLibrary(symbol.Library));
                var exports = lib.GetProperty("exports").EnumerateArray().Select(e => e.GetString()!).ToHashSet(StringComparer.Ordinal);
                var name = symbol.NameFor(windows);
                if (exports.Contains(name)) continue;
                var patterns = golden.GetProperty("patterns").GetProperty(GoldenLibrary(symbol.Library)).EnumerateArray()
                    .Select(p => new Regex(p.GetString()!));
                var where = $"{runtime.Name}: {member} '{name}' ({symbol.Signature})";
                if (!patterns.Any(p => p.IsMatch(name)))
                {
                    problems.Add($"{where} is outside the namespaces Goldens/native/make_exports.py keeps: add a pattern there and regenerate exports.json.");
                    continue;
                }
                var stem = Stem(name);
                var near = exports.Where(e => stem.Length > 0 && e.Contains(stem, StringComparison.Ordinal)).Take(4).ToList();
                problems.Add($"{where} is not exported by {lib.GetProperty("package").GetString()} ({lib.GetProperty("file").GetString()})" +
                             (near.Count > 0 ? $"; it exports: {string.Join(", ", near)}" : "") + ".");
            }
        }
        return problems;
    }

    /// <summary>The function's own name inside a mangled or plain name (to show what the library exports instead).</summary>
    private static string Stem(string name)
    {
        if (name.StartsWith("?", StringComparison.Ordinal)) return name[..(name.IndexOf('@') + 1)];   // MSVC: ?name@
        int i = name.StartsWith("_ZNK", StringComparison.Ordinal) ? 4 : name.StartsWith("_ZN", StringComparison.Ordinal) ? 3
              : name.StartsWith("_Z", StringComparison.Ordinal) ? 2 : -1;
        if (i < 0) return name;                                                                     // a C name
        string last = name;                                                                         // Itanium: <length><id>...
        while (i < name.Length && char.IsDigit(name[i]))
        {
            int j = i;
            while (j < name.Length && char.IsDigit(name[j])) j++;
            int length = int.Parse(name[i..j]);
            if (j + length > name.Length) break;
            last = name.Substring(j, length);
            i = j + length;
        }
        return last;
    }

    [Test]
    public void Every_bound_symbol_is_exported_by_the_runtime_packages_of_every_OS()
    {
        var symbols = BoundSymbols();
        Assert.That(symbols.Select(s => s.Symbol), Does.Contain(AutocastNative.IncrementNestingSymbol).And.Contain(TensorNative.Ndimension),
            "the reflection scan must see the bindings it checks");
        var golden = Golden;
        Assert.That(golden.GetProperty("runtimes").EnumerateObject().Select(r => r.Name),
            Is.EquivalentTo(new[] { "linux-x64", "win-x64", "osx-arm64" }));
        var problems = Problems(golden, symbols);
        Assert.That(problems, Is.Empty, string.Join(Environment.NewLine, problems));
    }

    [Test(Description = "The check fails the way it would have for the names TorchHooks bound before: MSVC encodes int64_t as _J, libtorch 2.10 returns int (H).")]
    public void The_check_catches_a_wrong_return_type_in_an_MSVC_name()
    {
        var old = new[]
        {
            ("AutocastNative.IncrementNestingSymbol (old)", NativeSymbol.Cpp(NativeLibraryId.TorchCpu, "int64_t at::autocast::increment_nesting()",
                "_ZN2at8autocast17increment_nestingEv", "?increment_nesting@autocast@at@@YA_JXZ")),
            ("AutocastNative.DecrementNestingSymbol (old)", NativeSymbol.Cpp(NativeLibraryId.TorchCpu, "int64_t at::autocast::decrement_nesting()",
                "_ZN2at8autocast17decrement_nestingEv", "?decrement_nesting@autocast@at@@YA_JXZ")),
        };
        var problems = Problems(Golden, old);
        Assert.That(problems, Has.Count.EqualTo(2), string.Join(Environment.NewLine, problems));
        Assert.That(problems[0], Does.StartWith("win-x64: AutocastNative.IncrementNestingSymbol (old) '?increment_nesting@autocast@at@@YA_JXZ'")
            .And.Contain("libtorch-cpu-win-x64 2.10.0").And.Contain("?increment_nesting@autocast@at@@YAHXZ"));
        Assert.That(problems[1], Does.Contain("?decrement_nesting@autocast@at@@YAHXZ"));
    }

    [Test]
    public void A_name_outside_the_golden_namespaces_is_reported_as_such()
    {
        var other = new[] { ("Test.Other", NativeSymbol.Cpp(NativeLibraryId.TorchCpu, "void at::native::foo()", "_ZN2at6native3fooEv", "?foo@native@at@@YAXXZ")) };
        var problems = Problems(Golden, other);
        Assert.That(problems, Has.Count.EqualTo(3));
        Assert.That(problems, Has.All.Contain("add a pattern there and regenerate"));
    }

    [Test]
    public void The_golden_file_is_for_the_referenced_TorchSharp_and_libtorch()
    {
        var props = XDocument.Load(Path.Combine(BuildTestSupport.RepoRoot, "Directory.Packages.props"));
        string Prop(string name) => props.Descendants(name).Single().Value;
        var versions = Golden.GetProperty("versions");
        Assert.That(versions.GetProperty("TorchSharp").GetString(), Is.EqualTo(Prop("TorchSharpVersion")),
            "TorchSharp was upgraded: run Goldens/native/make_exports.py and check the bindings against the new tables");
        Assert.That(versions.GetProperty("libtorch").GetString(), Is.EqualTo(Prop("LibTorchVersion")),
            "libtorch was upgraded: run Goldens/native/make_exports.py and check the bindings against the new tables");
        string checkedAgainst = NativeSymbol.CheckedAgainst;
        Assert.That(checkedAgainst, Does.Contain(Prop("TorchSharpVersion")).And.Contain(Prop("LibTorchVersion")));
    }

    [Test]
    public void Every_bound_symbol_resolves_in_the_libraries_this_process_loaded()
    {
        AutocastNative.EnsureBound();
        Assert.That(NativeLibrary.TryLoad("LibTorchSharp", typeof(torch).Assembly, null, out var libTorchSharp), Is.True);
        var missing = BoundSymbols()
            .Where(s => s.Symbol.TryResolve(s.Symbol.Library == NativeLibraryId.TorchCpu ? AutocastNative.TorchCpuHandle : libTorchSharp) == IntPtr.Zero)
            .Select(s => $"{s.Member} '{s.Symbol.CurrentName}'").ToList();
        Assert.That(missing, Is.Empty);
        Assert.That(TensorNative.Bound, Is.True);
    }

    [Test(Description = "A binding added later can't skip the export check: only NativeSymbol resolves exports.")]
    public void Native_exports_are_resolved_only_through_NativeSymbol()
    {
        var src = Path.Combine(BuildTestSupport.RepoRoot, "src", "TorchHooks");
        var offenders = new List<string>();
        foreach (var file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(src, file).Replace('\\', '/');
            if (rel.StartsWith("obj/", StringComparison.Ordinal) || rel.StartsWith("bin/", StringComparison.Ordinal)) continue;
            var text = File.ReadAllText(file);
            if (Path.GetFileName(file) != "NativeSymbol.cs" && Regex.IsMatch(text, @"\bTry?GetExport\s*\("))
                offenders.Add($"{rel}: NativeLibrary.(Try)GetExport — declare a NativeSymbol and use its Resolve/TryResolve");
            foreach (Match m in Regex.Matches(text, @"\[(?:DllImport|LibraryImport)\(\s*""([^""]+)"""))
                if (m.Groups[1].Value != "libc")
                    offenders.Add($"{rel}: [DllImport(\"{m.Groups[1].Value}\")] — bind through a NativeSymbol so the export tests see it");
        }
        Assert.That(offenders, Is.Empty, string.Join(Environment.NewLine, offenders));
    }
}
