using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security;
using System.Text.Json;
using System.Threading.Tasks;
using NUnit.Framework;

namespace TorchHooks.Tests.Build
{
    /// <summary>
    /// The TorchSharp backend selection of src/TorchHooks.Build/TorchHooks.Build.targets
    /// (-p:TorchBackend=cpu|cuda, -p:TorchOS=linux|windows|osx), checked on the real projects
    /// without restore or download. A throw-away driver project asks MSBuild for each project's
    /// CollectPackageReferences (which returns @(PackageReference) and runs the backend check
    /// first) under each property set; one `dotnet msbuild` evaluates all the valid cases, and a
    /// second, run concurrently, all the invalid ones (each allowed to fail on its own).
    /// </summary>
    [TestFixture]
    [Category("Slow")]   // MSBuild evaluations: left out by --filter "TestCategory!=Slow" (README)
    public sealed class BackendSelectionTests
    {
        private static string TestProject => Path.Combine(BuildTestSupport.RepoRoot, "tests", "TorchHooks.Tests", "TorchHooks.Tests.csproj");
        private static string LibraryProject => Path.Combine(BuildTestSupport.RepoRoot, "src", "TorchHooks", "TorchHooks.csproj");

        private static readonly (string Project, string Properties)[] ValidCases =
        {
            (TestProject, "TorchBackend=cpu;TorchOS=linux"),
            (TestProject, "TorchBackend=cpu;TorchOS=windows"),
            (TestProject, "TorchBackend=cpu;TorchOS=osx"),
            (TestProject, "TorchBackend=cuda;TorchOS=linux"),
            (TestProject, "TorchBackend=cuda;TorchOS=windows"),
            (TestProject, ""),
            (LibraryProject, "TorchBackend=cpu;TorchOS=linux"),
            (LibraryProject, "TorchBackend=cuda;TorchOS=windows"),
        };

        private static readonly string[] InvalidCases =
        {
            "TorchBackend=rocm;TorchOS=linux",
            "TorchBackend=cuda;TorchOS=osx",
            "TorchBackend=cpu;TorchOS=beos",
        };

        private BuildTestSupport.TempDir? _driverDir;
        private Task<ProcessResult>? _valid, _invalid;

        private static string Driver(IReadOnlyList<(string Project, string Properties)> cases, bool continueOnError)
        {
            var calls = cases.Select((c, i) =>
                $"    <MSBuild Projects=\"{SecurityElement.Escape(c.Project)}\" Targets=\"CollectPackageReferences\" Properties=\"{c.Properties}\"" +
                $" ContinueOnError=\"{continueOnError.ToString().ToLowerInvariant()}\">\n" +
                $"      <Output TaskParameter=\"TargetOutputs\" ItemName=\"Case{i}\" />\n    </MSBuild>\n");
            return "<Project>\n  <Target Name=\"Run\">\n" + string.Concat(calls) + "  </Target>\n</Project>\n";
        }

        private Task<ProcessResult> RunDriver(string name, IReadOnlyList<(string Project, string Properties)> cases, bool continueOnError)
        {
            string path = _driverDir!.File(name);
            File.WriteAllText(path, Driver(cases, continueOnError));
            string items = string.Join(",", Enumerable.Range(0, cases.Count).Select(i => "Case" + i));
            return BuildTestSupport.MSBuildAsync(path, "-t:Run", "-tl:off", "-m:1", "-getItem:" + items);
        }

        [OneTimeSetUp]
        public void StartEvaluations()
        {
            _driverDir = new BuildTestSupport.TempDir("torchhooks-backends");
            _valid = RunDriver("valid.proj", ValidCases, continueOnError: false);
            _invalid = RunDriver("invalid.proj", InvalidCases.Select(p => (TestProject, p)).ToList(), continueOnError: true);
        }

        [OneTimeTearDown]
        public void DeleteDriver()
        {
            // Wait for both runs (they read the driver files), then drop them and the driver folder.
            try { System.Threading.Tasks.Task.WhenAll(_valid!, _invalid!).Wait(); } catch (AggregateException) { }
            _valid?.Dispose();
            _invalid?.Dispose();
            _driverDir?.Dispose();
        }

        private static List<string> Items(ProcessResult r, int index)
        {
            int start = r.StdOut.IndexOf('{');
            Assert.That(start, Is.GreaterThanOrEqualTo(0), r.Output);
            using var doc = JsonDocument.Parse(r.StdOut[start..]);
            if (!doc.RootElement.GetProperty("Items").TryGetProperty("Case" + index, out var items)) return new List<string>();
            return items.EnumerateArray().Select(i => i.GetProperty("Identity").GetString()!).ToList();
        }

        /// <summary>The TorchSharp/libtorch package references of one valid case.</summary>
        private List<string> TorchPackages(string project, string properties = "")
        {
            var r = _valid!.GetAwaiter().GetResult();
            Assert.That(r.ExitCode, Is.EqualTo(0), r.Output);
            int index = Array.IndexOf(ValidCases, (project, properties));
            var all = Items(r, index);
            if (project == TestProject)
                Assert.That(all, Does.Contain("NUnit"), "the evaluation must see the project's own references");
            return all.Where(n => n.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || n.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase)).ToList();
        }

        /// <summary>The output of the invalid cases, and whether the given case returned no references.</summary>
        private (string Output, bool Rejected) Invalid(string properties)
        {
            var r = _invalid!.GetAwaiter().GetResult();
            return (r.Output, Items(r, Array.IndexOf(InvalidCases, properties)).Count == 0);
        }

        [Test]
        public void Cpu_Linux_ReferencesOnlyTheLinuxLibtorch() =>
            Assert.That(TorchPackages(TestProject, "TorchBackend=cpu;TorchOS=linux"), Is.EquivalentTo(new[] { "TorchSharp", "libtorch-cpu-linux-x64" }));

        [Test]
        public void Cpu_Windows_ReferencesOnlyTheWindowsLibtorch() =>
            Assert.That(TorchPackages(TestProject, "TorchBackend=cpu;TorchOS=windows"), Is.EquivalentTo(new[] { "TorchSharp", "libtorch-cpu-win-x64" }));

        [Test]
        public void Cpu_Osx_ReferencesOnlyTheMacLibtorch() =>
            Assert.That(TorchPackages(TestProject, "TorchBackend=cpu;TorchOS=osx"), Is.EquivalentTo(new[] { "TorchSharp", "libtorch-cpu-osx-arm64" }));

        [Test]
        public void Cuda_Linux_ReferencesTorchSharpCudaLinux_AndNoCpuLibtorch() =>
            Assert.That(TorchPackages(TestProject, "TorchBackend=cuda;TorchOS=linux"), Is.EquivalentTo(new[] { "TorchSharp-cuda-linux" }));

        [Test]
        public void Cuda_Windows_ReferencesTorchSharpCudaWindows_AndNoCpuLibtorch() =>
            Assert.That(TorchPackages(TestProject, "TorchBackend=cuda;TorchOS=windows"), Is.EquivalentTo(new[] { "TorchSharp-cuda-windows" }));

        [Test]
        public void Defaults_AreCpu_ForTheBuildMachinesOS()
        {
            string os = OperatingSystem.IsWindows() ? "win-x64" : OperatingSystem.IsMacOS() ? "osx-arm64" : "linux-x64";
            Assert.That(TorchPackages(TestProject), Is.EquivalentTo(new[] { "TorchSharp", "libtorch-cpu-" + os }));
        }

        [Test]
        public void Library_CompilesAgainstTorchSharp_WithoutNativePackages_OnEveryBackend()
        {
            Assert.That(TorchPackages(LibraryProject, "TorchBackend=cpu;TorchOS=linux"), Is.EqualTo(new[] { "TorchSharp" }));
            Assert.That(TorchPackages(LibraryProject, "TorchBackend=cuda;TorchOS=windows"), Is.EqualTo(new[] { "TorchSharp" }));
        }

        [Test]
        public void UnknownBackend_FailsNamingTorchBackend()
        {
            var (output, rejected) = Invalid("TorchBackend=rocm;TorchOS=linux");
            Assert.That(rejected, Is.True, output);
            Assert.That(output, Does.Contain("error : TorchBackend='rocm' is not known").And.Contain("-p:TorchBackend=cpu"));
        }

        [Test]
        public void Cuda_OnMacOS_FailsNamingTheFix()
        {
            var (output, rejected) = Invalid("TorchBackend=cuda;TorchOS=osx");
            Assert.That(rejected, Is.True, output);
            Assert.That(output, Does.Contain("error : TorchBackend=cuda has no macOS build"));
        }

        [Test]
        public void UnknownOS_FailsNamingTorchOS()
        {
            var (output, rejected) = Invalid("TorchBackend=cpu;TorchOS=beos");
            Assert.That(rejected, Is.True, output);
            Assert.That(output, Does.Contain("error : TorchOS='beos' is not known").And.Contain("-p:TorchOS=linux"));
        }

        [Test]
        public void InvalidSettings_FailTheBuild()
        {
            var r = _invalid!.GetAwaiter().GetResult();
            Assert.That(r.ExitCode, Is.Not.EqualTo(0), r.Output);
        }
    }
}
