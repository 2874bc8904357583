using System;
using System.IO;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Testing;

namespace TorchHooks.Tests.Analyzers
{
    /// <summary>
    /// Compiles test sources against the running .NET runtime's own assemblies plus the real TorchSharp and
    /// TorchHooks assemblies, so the tests need no reference-assembly download and see exactly the API users
    /// compile against.
    /// </summary>
    internal static class AnalyzerTestSupport
    {
        private static readonly Lazy<MetadataReference[]> References = new Lazy<MetadataReference[]>(() =>
        {
            var runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
            var runtime = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
                .Split(Path.PathSeparator)
                .Where(p => string.Equals(Path.GetDirectoryName(p), runtimeDir, StringComparison.Ordinal));
            var torch = new[]
            {
                typeof(TorchSharp.torch).Assembly.Location,
                typeof(TorchHooks.HookedModule<,>).Assembly.Location,
            };
            return runtime.Concat(torch).Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
        });

        /// <summary>No reference package: the references are the runtime's and TorchSharp's, added below.</summary>
        private static readonly ReferenceAssemblies NoPackage = new ReferenceAssemblies("net10.0");

        public static void Configure(SolutionState state)
        {
            state.AdditionalReferences.AddRange(References.Value);
        }

        public static CSharpAnalyzerTest<TAnalyzer, DefaultVerifier> AnalyzerTest<TAnalyzer>(string source)
            where TAnalyzer : DiagnosticAnalyzer, new()
        {
            var test = new CSharpAnalyzerTest<TAnalyzer, DefaultVerifier> { TestCode = source, ReferenceAssemblies = NoPackage };
            Configure(test.TestState);
            return test;
        }

        public static CSharpCodeFixTest<TAnalyzer, TFix, DefaultVerifier> CodeFixTest<TAnalyzer, TFix>(string source, string fixedSource)
            where TAnalyzer : DiagnosticAnalyzer, new()
            where TFix : CodeFixProvider, new()
        {
            var test = new CSharpCodeFixTest<TAnalyzer, TFix, DefaultVerifier>
            {
                TestCode = source,
                FixedCode = fixedSource,
                ReferenceAssemblies = NoPackage,
            };
            Configure(test.TestState);
            Configure(test.FixedState);
            return test;
        }
    }
}
