using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.Loader;
using NUnit.Framework;

namespace TorchHooks.Tests.Benchmarks
{
    /// <summary>
    /// docs/benchmarks.md's goals are data (benchmarks/TorchHooks.Benchmarks/Goals.cs): every goal names a suite the docs
    /// command runs and cases that suite measures, so a rename fails here in seconds, not after a five-minute run. The
    /// benchmarks assembly is built before this project and loaded by path into its own load context (its BenchmarkDotNet
    /// brings a Roslyn that cannot share this project's package graph).
    /// </summary>
    public class BenchmarkGoalsTests
    {
        private static readonly Lazy<Assembly> s_benchmarks = new(Load);

        private static Assembly Load()
        {
            var path = typeof(BenchmarkGoalsTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .First(a => a.Key == "BenchmarksAssembly").Value!;
            Assert.That(File.Exists(path), Is.True, $"the benchmarks project is built with this one ({path})");
            return new Isolated(Path.GetFullPath(path)).LoadFromAssemblyPath(Path.GetFullPath(path));
        }

        private sealed class Isolated : AssemblyLoadContext
        {
            private readonly AssemblyDependencyResolver _resolver;
            public Isolated(string main) : base("benchmarks", isCollectible: true) { _resolver = new AssemblyDependencyResolver(main); }
            protected override Assembly? Load(AssemblyName name) => _resolver.ResolveAssemblyToPath(name) is { } p ? LoadFromAssemblyPath(p) : null;
        }

        private static Type T(string name) => s_benchmarks.Value.GetType("TorchHooks.Benchmarks." + name, throwOnError: true)!;

        private static object? Static(string type, string member, params object[] args)
        {
            const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;
            var t = T(type);
            if (t.GetField(member, all) is { } f) return f.GetValue(null);
            if (t.GetProperty(member, all) is { } p) return p.GetValue(null);
            return t.GetMethod(member, all)!.Invoke(null, args);
        }

        private static IEnumerable<(string Id, Type Suite, string What, string[] Cases)> AllGoals()
        {
            foreach (var g in (IEnumerable)Static("Goals", "All")!)
            {
                var t = g.GetType();
                yield return ((string)t.GetProperty("Id")!.GetValue(g)!, (Type)t.GetProperty("Suite")!.GetValue(g)!,
                              (string)t.GetProperty("What")!.GetValue(g)!, (string[])t.GetProperty("Cases")!.GetValue(g)!);
            }
        }

        [Test]
        public void Every_goal_names_a_suite_the_docs_command_runs()
        {
            var goals = AllGoals().ToList();
            Assert.That(goals, Has.Count.GreaterThan(20), "Goals.All should find every goal field");
            var suites = ((IEnumerable)Static("Goals", "RunSuites")!).Cast<Type>().ToList();
            foreach (var goal in goals)
                Assert.That(suites, Does.Contain(goal.Suite), $"goal '{goal.What}' reads suite {goal.Suite.Name}, which the docs command does not run");
        }

        [Test]
        public void Every_goal_reads_cases_its_suite_measures()
        {
            foreach (var goal in AllGoals())
            {
                var cases = ((IEnumerable)Static("Goals", "CasesOf", goal.Suite)!).Cast<string>().ToList();
                Assert.That(goal.Cases, Is.Not.Empty, $"goal '{goal.What}' names no case");
                foreach (var c in goal.Cases)
                    Assert.That(cases, Does.Contain(c), $"goal '{goal.What}': suite {goal.Suite.Name} has no case '{c}'");
            }
        }

        [Test]
        public void Suite_keys_are_unique_and_paired_suites_list_their_cases()
        {
            var keys = ((IEnumerable)Static("DocsRun", "Suites")!).Cast<object>().Select(s => (string)s.GetType().GetProperty("Key")!.GetValue(s)!).ToList();
            Assert.That(keys, Is.Unique);
            Assert.That(keys, Does.Contain("Dispatch"), "--suites names stay the class names without 'Benchmarks'");
            foreach (Type paired in (IEnumerable)Static("DocsRun", "PairedSuites")!)
                Assert.That(((IEnumerable)Static("Goals", "CasesOf", paired)!).Cast<string>(), Is.Not.Empty, $"{paired.Name} should expose CaseKeys");
        }

        [Test]
        public void Goal_text_names_no_issue_or_commit()
        {
            foreach (var goal in AllGoals())
                Assert.That(goal.What, Does.Not.Match(@"(?i)\bissue\s*\d|\bcommit\b|\b[0-9a-f]{7,40}\b"), "generated prose names no issue numbers or commit hashes");
        }
    }
}
