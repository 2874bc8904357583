using System;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.TorchSharpInternals
{
    /// <summary>Every TorchSharp internal TorchHooks reflects on is in one file and is found on TorchSharp 0.107.0.</summary>
    [TestFixture]
    public class TorchSharpInternalsTests
    {
        [Test(Description = "Every reflected member is found on the TorchSharp this repository builds against (0.107.0)")]
        public void EveryMemberIsFoundOnTorchSharp0107()
        {
            Assert.That(TorchHooks.TorchSharpInternals.LoadedVersion, Does.StartWith(TorchHooks.TorchSharpInternals.CheckedVersion));
            var members = TorchHooks.TorchSharpInternals.Members;
            Assert.That(members, Has.Count.EqualTo(10));
            Assert.That(members.Where(m => !m.Found).Select(m => m.Member), Is.Empty);
            Assert.That(TorchHooks.TorchSharpInternals.ModuleHandle, Is.Not.Null);
            Assert.That(TorchHooks.TorchSharpInternals.Submodules, Is.Not.Null);
            Assert.That(TorchHooks.TorchSharpInternals.Parameters, Is.Not.Null);
            Assert.That(TorchHooks.TorchSharpInternals.Buffers, Is.Not.Null);
            Assert.That(TorchHooks.TorchSharpInternals.LibtorchPackageVersion("?"), Does.StartWith("2.10.0"));
        }

        [Test(Description = "The accessors read what they should: a live Linear's parameters and handle, then disposed")]
        public void AccessorsReadTheRegistrations()
        {
            var lin = nn.Linear(2, 3);
            Assert.That(TorchHooks.TorchSharpInternals.Parameters!(lin)!.Count, Is.EqualTo(2));
            Assert.That(TorchHooks.TorchSharpInternals.ModuleHandle!(lin), Is.Not.Null);
            Assert.That(ModuleState.IsDisposed(lin), Is.False);
            lin.Dispose();
            Assert.That(ModuleState.IsDisposed(lin), Is.True);
        }

        [Test(Description = "No other source file reflects on TorchSharp: GetField/GetProperty/GetMethod on TorchSharp types appear only in TorchSharpInternals.cs")]
        public void ReflectionOnTorchSharpLivesInOneFile()
        {
            var src = System.IO.Path.Combine(TorchHooks.Tests.Build.BuildTestSupport.RepoRoot, "src", "TorchHooks");
            var offenders = System.IO.Directory.GetFiles(src, "*.cs", System.IO.SearchOption.AllDirectories)
                .Where(f => !f.Contains($"{System.IO.Path.DirectorySeparatorChar}obj{System.IO.Path.DirectorySeparatorChar}"))
                .Where(f => !f.EndsWith("TorchSharpInternals.cs", StringComparison.Ordinal))
                .Where(f => System.Text.RegularExpressions.Regex.IsMatch(System.IO.File.ReadAllText(f), @"typeof\((torch|HookableModule|TorchSharp)[^)]*\)\s*\.\s*Get(Field|Property|Method)"))
                .ToList();
            Assert.That(offenders, Is.Empty);
        }
    }
}
