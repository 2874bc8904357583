using System;
using System.Linq;
using NUnit.Framework;

namespace TorchHooks.Tests.Naming
{
    /// <summary>No public TorchHooks type shares its name with a type of a namespace user files commonly import (CS0104 otherwise).</summary>
    [TestFixture]
    public class PublicNameTests
    {
        private static readonly string[] s_commonNamespaces =
        {
            "System", "System.Collections", "System.Collections.Generic", "System.Collections.Concurrent", "System.Diagnostics",
            "System.Diagnostics.Tracing", "System.IO", "System.Linq", "System.Net", "System.Net.Http", "System.Reflection",
            "System.Runtime.CompilerServices", "System.Runtime.InteropServices", "System.Text", "System.Text.Json",
            "System.Threading", "System.Threading.Tasks", "System.ComponentModel",
        };

        [Test(Description = "e.g. TraceOptions collided with System.Diagnostics.TraceOptions: a user file with 'using System.Diagnostics;' got CS0104")]
        public void NoPublicTypeNameCollidesWithCommonSystemNamespaces()
        {
            var ours = typeof(ModuleExtensions).Assembly.GetExportedTypes().Concat(typeof(TorchHooks.NUnit.Matches).Assembly.GetExportedTypes()).Select(t => t.Name).ToHashSet();
            var system = AppDomain.CurrentDomain.GetAssemblies()
                .Concat(new[] { typeof(System.Diagnostics.Stopwatch).Assembly, typeof(System.Text.Json.JsonSerializer).Assembly, typeof(System.Net.Http.HttpClient).Assembly,
                                typeof(System.ComponentModel.Component).Assembly, typeof(System.Diagnostics.TraceOptions).Assembly, typeof(System.Diagnostics.Tracing.EventSource).Assembly })
                .Distinct()
                .Where(a => a.GetName().Name is { } n && (n.StartsWith("System", StringComparison.Ordinal) || n == "mscorlib" || n == "netstandard"))
                .SelectMany(a => { try { return a.GetExportedTypes(); } catch (Exception) { return Array.Empty<Type>(); } })
                .Where(t => t.Namespace is { } ns && s_commonNamespaces.Contains(ns))
                .Select(t => (t.Name, t.FullName))
                .ToList();
            var collisions = system.Where(s => ours.Contains(s.Name)).Select(s => s.FullName).Distinct().OrderBy(n => n).ToList();
            Assert.That(collisions, Is.Empty);
        }
    }
}
