using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using NUnit.Framework;
using TorchHooks.Build;
using TempDir = TorchHooks.Tests.Build.BuildTestSupport.TempDir;

namespace TorchHooks.Tests.Build
{
    /// <summary>
    /// Tests of the build-time native-load fix (src/TorchHooks.Build): the ELF reader/editor, the
    /// MSBuild task, the targets that run it, and its effect on the real libLibTorchSharp.so.
    /// The ELF fixtures are built here with gcc: a library "libfake" that defines the version
    /// node GLIBCXX_3.4.32 (and GLIBCXX_3.4.30), a library "libuser" that needs it, and a second
    /// libfake with only GLIBCXX_3.4.30, standing in for Debian 12's libstdc++.
    /// </summary>
    [TestFixture]
    [Category("Slow")]   // compiles native test libraries, runs MSBuild tasks: left out by --filter "TestCategory!=Slow" (README)
    [NonParallelizable] // dlopen state is process-wide
    public sealed class ElfVersionNeedsTests
    {
        private const string Missing = "GLIBCXX_3.4.32";
        private const string Present = "GLIBCXX_3.4.30";

        /// <summary>How libuser refers to the symbol that carries the missing version.</summary>
        public enum Reference
        {
            /// <summary>
            /// Like GCC 13's &lt;iostream&gt; referencing std::ios_base_library_init: a bare
            /// `.globl` reference, so the need is recorded but there is no relocation at all.
            /// </summary>
            NoRelocation,
            /// <summary>A call in a function that is never called: a lazily bound PLT relocation.</summary>
            UncalledFunction,
        }

        private sealed class Variant
        {
            public required string Fake;      // soname stem, e.g. thfakea → libthfakea.so
            public required string UserPath;  // libuser linked against the GLIBCXX_3.4.32 libfake
            public required string FakeNewPath; // libfake defining GLIBCXX_3.4.30 and GLIBCXX_3.4.32
            public required string FakeOldPath; // libfake defining only GLIBCXX_3.4.30 (same soname)
            public string FakeFileName => $"lib{Fake}.so";
        }

        private TempDir? _templates;
        private string? _noGccReason;
        private readonly Dictionary<Reference, Variant> _variants = new();

        [OneTimeSetUp]
        public void BuildFixtures()
        {
            if (!OperatingSystem.IsLinux()) { _noGccReason = "ELF fixtures need Linux."; return; }
            string? gcc = BuildTestSupport.FindOnPath("gcc");
            if (gcc is null) { _noGccReason = "gcc is not installed; the ELF fixtures are built with it."; return; }
            _templates = new TempDir("torchhooks-elf");
            _variants[Reference.NoRelocation] = BuildVariant(gcc, _templates, "thfakea", "thusera",
                "extern int old_sym(void);\n__asm__(\".globl fake_sym\");\nint user_value(void) { return old_sym() + 1; }\n",
                Array.Empty<string>());
            // -z lazy: the fixture must not depend on the toolchain's default (some default to -z now).
            _variants[Reference.UncalledFunction] = BuildVariant(gcc, _templates, "thfakeb", "thuserb",
                "extern int old_sym(void);\nextern int fake_sym(void);\nint user_value(void) { return old_sym() + 1; }\nint never_called(void) { return fake_sym(); }\n",
                new[] { "-Wl,-z,lazy" });
        }

        private static Variant BuildVariant(string gcc, TempDir root, string fake, string user, string userSource, string[] userLinkArgs)
        {
            string dir = root.Sub(fake);
            string newDir = root.Sub(fake + "/new"), oldDir = root.Sub(fake + "/old");
            File.WriteAllText(Path.Combine(dir, "fake_new.c"), "int old_sym(void) { return 40; }\nint fake_sym(void) { return 2; }\n");
            File.WriteAllText(Path.Combine(dir, "new.map"),
                $"{Present} {{ global: old_sym; local: *; }};\n{Missing} {{ global: fake_sym; }} {Present};\n");
            File.WriteAllText(Path.Combine(dir, "fake_old.c"), "int old_sym(void) { return 41; }\n");
            File.WriteAllText(Path.Combine(dir, "old.map"), $"{Present} {{ global: old_sym; local: *; }};\n");
            File.WriteAllText(Path.Combine(dir, "user.c"), userSource);

            string soname = $"lib{fake}.so";
            Gcc(gcc, dir, "-shared", "-fPIC", "-o", Path.Combine(newDir, soname), $"-Wl,-soname,{soname}",
                "-Wl,--version-script=new.map", "fake_new.c");
            var userArgs = new List<string> { "-shared", "-fPIC", "-o", Path.Combine(newDir, $"lib{user}.so"), "user.c",
                "-L" + newDir, "-l" + fake, "-Wl,-rpath,$ORIGIN" };
            userArgs.AddRange(userLinkArgs);
            Gcc(gcc, dir, userArgs.ToArray());
            // The "older system": same soname, rebuilt without the GLIBCXX_3.4.32 node.
            Gcc(gcc, dir, "-shared", "-fPIC", "-o", Path.Combine(oldDir, soname), $"-Wl,-soname,{soname}",
                "-Wl,--version-script=old.map", "fake_old.c");
            return new Variant
            {
                Fake = fake,
                UserPath = Path.Combine(newDir, $"lib{user}.so"),
                FakeNewPath = Path.Combine(newDir, soname),
                FakeOldPath = Path.Combine(oldDir, soname),
            };
        }

        private static void Gcc(string gcc, string dir, params string[] args)
        {
            var r = BuildTestSupport.RunAsync(gcc, args, dir).GetAwaiter().GetResult();
            if (r.ExitCode != 0) throw new InvalidOperationException($"gcc {string.Join(" ", args)} failed:\n{r.Output}");
        }

        [OneTimeTearDown]
        public void DeleteFixtures() => _templates?.Dispose();

        private Variant Fixture(Reference reference = Reference.NoRelocation)
        {
            if (_noGccReason != null) Assert.Ignore(_noGccReason);
            return _variants[reference];
        }

        /// <summary>Copies libuser and one of the libfake builds into a fresh folder (a "deployment").</summary>
        private static string Deploy(TempDir dir, Variant v, bool systemHasVersion)
        {
            string user = dir.File(Path.GetFileName(v.UserPath));
            File.Copy(v.UserPath, user);
            File.Copy(systemHasVersion ? v.FakeNewPath : v.FakeOldPath, dir.File(v.FakeFileName));
            return user;
        }

        private static ElfVersionNeed Need(string path, string version) =>
            ElfVersionNeeds.ReadNeeds(path).Single(n => n.Version == version);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate int IntFunction();

        private static int CallUserValue(IntPtr handle) =>
            Marshal.GetDelegateForFunctionPointer<IntFunction>(NativeLibrary.GetExport(handle, "user_value"))();

        // ---- end to end: the loader refuses the library, the edit makes it load ----

        [Test]
        public void Fixture_RecordsAStrongNeedForTheVersion([Values] Reference reference)
        {
            var v = Fixture(reference);
            var needs = ElfVersionNeeds.ReadNeeds(v.UserPath).Where(n => n.File == v.FakeFileName).ToList();
            Assert.That(needs.Select(n => n.Version), Is.EquivalentTo(new[] { Present, Missing }));
            Assert.That(needs.All(n => !n.IsWeak), Is.True, "gcc records version needs as strong");
            Assert.That(ElfVersionNeeds.ReadDefinitions(v.FakeNewPath), Is.EquivalentTo(new[] { v.FakeFileName, Present, Missing }));
            Assert.That(ElfVersionNeeds.ReadDefinitions(v.FakeOldPath), Is.EquivalentTo(new[] { v.FakeFileName, Present }));
        }

        [Test]
        public void WeakNeed_LetsTheLoaderAcceptTheMissingVersion([Values] Reference reference)
        {
            var v = Fixture(reference);
            if (reference == Reference.UncalledFunction && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LD_BIND_NOW")))
                Assert.Ignore("LD_BIND_NOW is set: every PLT entry is bound at load time, so a weak version cannot help a library that has a relocation against the symbol. (libLibTorchSharp.so has none; see the NoRelocation case.)");

            // Control: where the version exists the unmodified library loads.
            using (var good = new TempDir("torchhooks-elf-load"))
            {
                string user = Deploy(good, v, systemHasVersion: true);
                Assert.That(NativeLibrary.TryLoad(user, out IntPtr h), Is.True);
                try { Assert.That(CallUserValue(h), Is.EqualTo(41)); }
                finally { NativeLibrary.Free(h); }
            }

            using var dir = new TempDir("torchhooks-elf-load");
            string path = Deploy(dir, v, systemHasVersion: false);
            Assert.That(NativeLibrary.TryLoad(path, out _), Is.False, "before the fix the loader must refuse the library");
            var refused = Assert.Throws<DllNotFoundException>(() => NativeLibrary.Load(path))!;
            Assert.That(refused.Message, Does.Contain(Missing).And.Contain("not found"));

            Assert.That(ElfVersionNeeds.MarkNeedWeak(path, Missing), Is.EqualTo(WeakenOutcome.Weakened));

            Assert.That(NativeLibrary.TryLoad(path, out IntPtr handle), Is.True, "after the fix the library must load");
            try
            {
                // The library works: its GLIBCXX_3.4.30 symbol resolves to the "system" library.
                Assert.That(CallUserValue(handle), Is.EqualTo(42));
            }
            finally { NativeLibrary.Free(handle); }
        }

        // ---- the editor ----

        [Test]
        public void MarkNeedWeak_WhenTheNeedIsAbsent_LeavesTheFileUntouched()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-elf");
            // libuser needs GLIBCXX_3.4.30 and 3.4.32, not 3.4.99; libfake has no GLIBCXX need at all.
            foreach (var (source, version) in new[] { (v.UserPath, "GLIBCXX_3.4.99"), (v.FakeNewPath, Missing) })
            {
                string path = dir.File(Guid.NewGuid().ToString("N") + ".so");
                File.Copy(source, path);
                var written = new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc);
                File.SetLastWriteTimeUtc(path, written);
                byte[] before = File.ReadAllBytes(path);

                Assert.That(ElfVersionNeeds.MarkNeedWeak(path, version), Is.EqualTo(WeakenOutcome.NotNeeded));
                Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
                Assert.That(File.GetLastWriteTimeUtc(path), Is.EqualTo(written));
            }
        }

        [Test]
        public void MarkNeedWeak_IsIdempotent()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-elf");
            string path = dir.File("libuser.so");
            File.Copy(v.UserPath, path);

            Assert.That(ElfVersionNeeds.MarkNeedWeak(path, Missing), Is.EqualTo(WeakenOutcome.Weakened));
            byte[] once = File.ReadAllBytes(path);
            Assert.That(ElfVersionNeeds.MarkNeedWeak(path, Missing), Is.EqualTo(WeakenOutcome.AlreadyWeak));
            Assert.That(File.ReadAllBytes(path), Is.EqualTo(once));
            Assert.That(Need(path, Missing).IsWeak, Is.True);
        }

        [Test]
        public void MarkNeedWeak_ChangesOnlyTheTargetedFlag()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-elf");
            string path = dir.File("libuser.so");
            File.Copy(v.UserPath, path);
            byte[] before = File.ReadAllBytes(path);
            var needsBefore = ElfVersionNeeds.ReadNeeds(path);
            var target = needsBefore.Single(n => n.Version == Missing);

            ElfVersionNeeds.MarkNeedWeak(path, Missing);

            byte[] after = File.ReadAllBytes(path);
            Assert.That(after, Has.Length.EqualTo(before.Length));
            var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToList();
            Assert.That(changed, Is.Not.Empty);
            Assert.That(changed, Is.All.InRange(target.FlagsOffset, target.FlagsOffset + 1), "only vna_flags of the targeted need may change");
            ushort flagsAfter = BitConverter.ToUInt16(after, (int)target.FlagsOffset);
            Assert.That(flagsAfter, Is.EqualTo((ushort)(target.Flags | ElfVersionNeeds.VerFlagWeak)));

            // Every other need (GLIBCXX_3.4.30 from the same library, GLIBC_* from libc) is unchanged.
            var needsAfter = ElfVersionNeeds.ReadNeeds(path);
            Assert.That(needsAfter.Select(n => (n.File, n.Version, n.FlagsOffset)), Is.EqualTo(needsBefore.Select(n => (n.File, n.Version, n.FlagsOffset))));
            foreach (var (b, a) in needsBefore.Zip(needsAfter))
                Assert.That(a.Flags, Is.EqualTo(b.Version == Missing ? (ushort)(b.Flags | ElfVersionNeeds.VerFlagWeak) : b.Flags), b.Version);
            Assert.That(needsAfter.Count(n => n.IsWeak), Is.EqualTo(1));
        }

        [Test]
        public void MarkNeedWeak_KeepsWriteTimeAndFileMode_AndLeavesNoTemporaryFile()
        {
            var v = Fixture();
            if (!OperatingSystem.IsLinux()) return; // Fixture() ignores the test elsewhere; this informs the platform analyzer.
            using var dir = new TempDir("torchhooks-elf");
            string path = dir.File("libuser.so");
            File.Copy(v.UserPath, path);
            var written = new DateTime(2021, 6, 7, 8, 9, 10, DateTimeKind.Utc);
            File.SetLastWriteTimeUtc(path, written);
            var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
            File.SetUnixFileMode(path, mode);

            Assert.That(ElfVersionNeeds.MarkNeedWeak(path, Missing), Is.EqualTo(WeakenOutcome.Weakened));

            Assert.That(File.GetLastWriteTimeUtc(path), Is.EqualTo(written), "an unchanged write time lets MSBuild's incremental copy skip the file");
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(mode));
            Assert.That(Directory.GetFiles(dir.Path).Select(Path.GetFileName), Is.EqualTo(new[] { "libuser.so" }));
        }

        [DllImport("libc", SetLastError = true, EntryPoint = "link")]
        private static extern int HardLink(string existing, string newPath);

        [Test]
        public void MarkNeedWeak_DoesNotWriteThroughAHardLink()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-elf");
            // The NuGet cache copy, and the output copy made as a hard link to it.
            string cache = Path.Combine(dir.Sub("cache"), "libuser.so");
            string output = Path.Combine(dir.Sub("bin"), "libuser.so");
            File.Copy(v.UserPath, cache);
            Assert.That(HardLink(cache, output), Is.EqualTo(0), $"link() failed: errno {Marshal.GetLastPInvokeError()}");
            byte[] original = File.ReadAllBytes(cache);

            Assert.That(ElfVersionNeeds.MarkNeedWeak(output, Missing), Is.EqualTo(WeakenOutcome.Weakened));

            Assert.That(File.ReadAllBytes(cache), Is.EqualTo(original), "the cache copy must keep its original content");
            Assert.That(Need(cache, Missing).IsWeak, Is.False);
            Assert.That(Need(output, Missing).IsWeak, Is.True);
        }

        [Test]
        public void Reader_RejectsANonElfFile_NamingTheFile()
        {
            using var dir = new TempDir("torchhooks-elf");
            string text = dir.File("notes.txt");
            File.WriteAllText(text, "this is not an ELF file, just some text that is long enough to have an ELF header");
            string empty = dir.File("empty.so");
            File.WriteAllBytes(empty, Array.Empty<byte>());
            foreach (var path in new[] { text, empty })
            {
                var e = Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.MarkNeedWeak(path, Missing))!;
                Assert.That(e.Message, Does.Contain(path).And.Contain("not an ELF file"));
                Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.ReadNeeds(path));
                Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.ReadDefinitions(path));
            }
        }

        [Test]
        public void Reader_RejectsATruncatedElfFile_NamingTheFile()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-elf");
            string path = dir.File("truncated.so");
            File.WriteAllBytes(path, File.ReadAllBytes(v.UserPath).Take(256).ToArray());
            var e = Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.MarkNeedWeak(path, Missing))!;
            Assert.That(e.Message, Does.Contain(path).And.Contain("truncated"));
        }

        [Test]
        public void MarkNeedWeak_RejectsAnEmptyVersion_NamingTheArgument()
        {
            var e = Assert.Throws<ArgumentException>(() => ElfVersionNeeds.MarkNeedWeak("/nonexistent.so", ""))!;
            Assert.That(e.ParamName, Is.EqualTo("version"));
        }

        // ---- the system libstdc++ and an independent reader (readelf) ----

        private static string SystemLibstdcxx()
        {
            if (!OperatingSystem.IsLinux()) Assert.Ignore("The system libstdc++ check is Linux-only.");
            string? path = ElfVersionNeeds.FindSystemLibrary("libstdc++.so.6");
            if (path is null) Assert.Ignore("No libstdc++.so.6 on this system.");
            return path!;
        }

        private static bool IsDebian12()
        {
            if (!File.Exists("/etc/os-release")) return false;
            var lines = File.ReadAllLines("/etc/os-release");
            return lines.Contains("ID=debian") && lines.Contains("VERSION_ID=\"12\"");
        }

        [Test]
        public void FindSystemLibrary_FindsLibstdcxx_AndNotAMissingLibrary()
        {
            string path = SystemLibstdcxx();
            Assert.That(File.Exists(path), Is.True, path);
            Assert.That(ElfVersionNeeds.FindSystemLibrary("libtorchhooks-does-not-exist.so.7"), Is.Null);
        }

        [Test]
        public void ReadDefinitions_SystemLibstdcxx_ListsAContiguousGlibcxxSeries()
        {
            string path = SystemLibstdcxx();
            var defs = ElfVersionNeeds.ReadDefinitions(path);
            Assert.That(defs, Does.Contain("libstdc++.so.6").And.Contain("GLIBCXX_3.4").And.Contain("CXXABI_1.3"));
            // libstdc++ adds one GLIBCXX_3.4.N node per release and never drops one: 3.4.1 … 3.4.max.
            var minors = defs.Select(d => Regex.Match(d, @"^GLIBCXX_3\.4\.(\d+)$")).Where(m => m.Success)
                             .Select(m => int.Parse(m.Groups[1].Value)).OrderBy(n => n).ToList();
            Assert.That(minors, Is.EqualTo(Enumerable.Range(1, minors.Count)));
            int max = minors.Last();
            Assert.That(defs.Contains(Present), Is.EqualTo(max >= 30));
            Assert.That(defs.Contains(Missing), Is.EqualTo(max >= 32));
            if (IsDebian12())
            {
                // Debian 12 ships GCC 12's libstdc++: the very situation the build fix exists for.
                Assert.That(defs, Does.Contain(Present));
                Assert.That(defs, Does.Not.Contain(Missing));
            }
        }

        private static string ReadElf(params string[] args)
        {
            string? readelf = BuildTestSupport.FindOnPath("readelf");
            if (readelf is null) Assert.Ignore("readelf (binutils) is not installed.");
            var r = BuildTestSupport.Run(readelf!, args);
            Assert.That(r.ExitCode, Is.EqualTo(0), r.Output);
            return r.StdOut;
        }

        private static string Section(string readelfV, string name)
        {
            int start = readelfV.IndexOf($"'{name}'", StringComparison.Ordinal);
            if (start < 0) return "";
            int end = readelfV.IndexOf("section '", start + name.Length + 2, StringComparison.Ordinal);
            return end < 0 ? readelfV[start..] : readelfV[start..end];
        }

        [Test]
        public void ReadDefinitions_AgreesWithReadelf_OnTheSystemLibstdcxx()
        {
            string path = SystemLibstdcxx();
            string text = Section(ReadElf("-V", "-W", path), ".gnu.version_d");
            var expected = Regex.Matches(text, @"Index: \d+\s+Cnt: \d+\s+Name: (\S+)").Select(m => m.Groups[1].Value).ToList();
            Assert.That(expected, Is.Not.Empty);
            Assert.That(ElfVersionNeeds.ReadDefinitions(path), Is.EqualTo(expected));
        }

        private static string CachedLibTorchSharp(out string version)
        {
            if (!OperatingSystem.IsLinux() || RuntimeInformation.OSArchitecture != Architecture.X64)
                Assert.Ignore("libLibTorchSharp.so is checked on linux-x64 only.");
            // The TorchSharp version this test project was built against, from its deps.json.
            string deps = Path.Combine(TestContext.CurrentContext.TestDirectory, "TorchHooks.Tests.deps.json");
            using var doc = JsonDocument.Parse(File.ReadAllText(deps));
            version = doc.RootElement.GetProperty("libraries").EnumerateObject()
                .Select(p => p.Name).Single(n => n.StartsWith("TorchSharp/", StringComparison.Ordinal))["TorchSharp/".Length..];
            string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom
                ? custom
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            string cached = Path.Combine(root, "torchsharp", version, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            Assert.That(File.Exists(cached), Is.True, $"TorchSharp {version} is not in the NuGet cache at {cached}");
            return cached;
        }

        private static string OutputLibTorchSharp =>
            Path.Combine(TestContext.CurrentContext.TestDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

        [Test]
        public void ReadNeeds_AgreesWithReadelf_OnLibTorchSharp()
        {
            string cached = CachedLibTorchSharp(out _);
            string text = Section(ReadElf("-V", "-W", cached), ".gnu.version_r");
            var expected = new List<(string File, string Version, bool Weak)>();
            string file = "";
            foreach (var line in text.Split('\n'))
            {
                var f = Regex.Match(line, @"File: (\S+)\s+Cnt:");
                if (f.Success) { file = f.Groups[1].Value; continue; }
                var n = Regex.Match(line, @"Name: (\S+)\s+Flags: (.*?)\s+Version:");
                if (n.Success) expected.Add((file, n.Groups[1].Value, n.Groups[2].Value.Contains("WEAK")));
            }
            Assert.That(expected, Has.Count.GreaterThan(10));
            Assert.That(ElfVersionNeeds.ReadNeeds(cached).Select(n => (n.File, n.Version, n.IsWeak)), Is.EqualTo(expected));
        }

        [Test(Description = "The premise of the fix: one symbol carries GLIBCXX_3.4.32 and nothing relocates against it.")]
        public void ShippedLibTorchSharp_NeedsTheVersionForOneUnrelocatedSymbolOnly()
        {
            string cached = CachedLibTorchSharp(out _);
            var symbols = ReadElf("--dyn-syms", "-W", cached).Split('\n').Where(l => l.Contains("@" + Missing)).ToList();
            Assert.That(symbols, Has.Count.EqualTo(1));
            Assert.That(symbols[0], Does.Contain("UND _ZSt21ios_base_library_initv@" + Missing));
            Assert.That(ReadElf("-r", "-W", cached), Does.Not.Contain("ios_base_library_init"));
            var need = Need(cached, Missing);
            Assert.That((need.File, need.IsWeak), Is.EqualTo(("libstdc++.so.6", false)));
        }

        [Test]
        public void OutputCopyOfLibTorchSharp_IsFixed_AndTheNuGetCacheCopyIsNot()
        {
            string cached = CachedLibTorchSharp(out string version);
            string output = OutputLibTorchSharp;
            Assert.That(File.Exists(output), Is.True, output);
            bool systemHasIt = ElfVersionNeeds.ReadDefinitions(SystemLibstdcxx()).Contains(Missing);

            // The cache copy is as shipped: a strong need.
            Assert.That(Need(cached, Missing).IsWeak, Is.False, $"the NuGet cache copy of TorchSharp {version} was modified");

            byte[] shipped = File.ReadAllBytes(cached), built = File.ReadAllBytes(output);
            Assert.That(built, Has.Length.EqualTo(shipped.Length));
            var changed = Enumerable.Range(0, shipped.Length).Where(i => shipped[i] != built[i]).ToList();
            if (systemHasIt)
            {
                Assert.That(changed, Is.Empty, "the system libstdc++ provides the version: the output copy must be left as shipped");
            }
            else
            {
                var need = Need(output, Missing);
                Assert.That(need.IsWeak, Is.True, "the build must mark the output copy's need weak");
                Assert.That(changed, Is.All.InRange(need.FlagsOffset, need.FlagsOffset + 1));
                Assert.That(changed, Is.Not.Empty);
            }
            // The build keeps the write time, so the next incremental copy sees an unchanged file.
            Assert.That(File.GetLastWriteTimeUtc(output), Is.EqualTo(File.GetLastWriteTimeUtc(cached)));
        }

        [Test]
        public void OutputCopyOfLibTorchSharp_Loads()
        {
            CachedLibTorchSharp(out _);
            Assert.That(NativeLibrary.TryLoad(OutputLibTorchSharp, out IntPtr handle), Is.True,
                "libLibTorchSharp.so in the test output folder does not load; see docs/native-loading.md");
            // TorchSharp keeps it loaded anyway; freeing only drops this reference.
            NativeLibrary.Free(handle);
        }

        // ---- the MSBuild task ----

        private sealed class RecordingBuildEngine : IBuildEngine
        {
            public List<string> Messages { get; } = new();
            public List<string> Errors { get; } = new();
            public List<string> Warnings { get; } = new();
            public bool ContinueOnError => false;
            public int LineNumberOfTaskNode => 0;
            public int ColumnNumberOfTaskNode => 0;
            public string ProjectFileOfTaskNode => "test.proj";
            public bool BuildProjectFile(string projectFileName, string[] targetNames, IDictionary globalProperties, IDictionary targetOutputs) =>
                throw new NotSupportedException();
            public void LogCustomEvent(CustomBuildEventArgs e) => Messages.Add(e.Message ?? "");
            public void LogErrorEvent(BuildErrorEventArgs e) => Errors.Add(e.Message ?? "");
            public void LogMessageEvent(BuildMessageEventArgs e) => Messages.Add(e.Message ?? "");
            public void LogWarningEvent(BuildWarningEventArgs e) => Warnings.Add(e.Message ?? "");
        }

        private static (bool Result, RecordingBuildEngine Engine) RunTask(string file, string systemLibrary)
        {
            var engine = new RecordingBuildEngine();
            var task = new MakeVersionNeedWeak
            {
                BuildEngine = engine,
                Files = new ITaskItem[] { new TaskItem(file) },
                Version = Missing,
                SystemLibrary = systemLibrary,
            };
            return (task.Execute(), engine);
        }

        [Test]
        public void Task_WhenTheSystemLibraryDefinesTheVersion_LeavesTheFileAsShipped()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-task");
            string file = Deploy(dir, v, systemHasVersion: true);
            byte[] before = File.ReadAllBytes(file);

            var (ok, engine) = RunTask(file, v.FakeNewPath);

            Assert.That(ok, Is.True);
            Assert.That(engine.Errors, Is.Empty);
            Assert.That(File.ReadAllBytes(file), Is.EqualTo(before));
            Assert.That(engine.Messages, Has.Count.EqualTo(1));
            Assert.That(engine.Messages[0], Does.Contain(v.FakeNewPath).And.Contain($"provides {Missing}").And.Contain(file).And.Contain("left as shipped"));
        }

        [Test]
        public void Task_WhenTheSystemLibraryLacksTheVersion_WeakensTheNeed()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-task");
            string file = Deploy(dir, v, systemHasVersion: false);

            var (ok, engine) = RunTask(file, v.FakeOldPath);

            Assert.That(ok, Is.True);
            Assert.That(engine.Errors, Is.Empty);
            Assert.That(Need(file, Missing).IsWeak, Is.True);
            Assert.That(engine.Messages, Has.Count.EqualTo(1));
            Assert.That(engine.Messages[0], Does.Contain(v.FakeOldPath).And.Contain($"lacks {Missing}").And.Contain(file).And.Contain($"marked its need for {Missing} weak"));

            // A second build finds nothing to do and says so.
            var (again, engine2) = RunTask(file, v.FakeOldPath);
            Assert.That(again, Is.True);
            Assert.That(engine2.Messages.Single(), Does.Contain("already weak"));
        }

        [Test]
        public void Task_OnANonElfFile_LogsAnErrorNamingTheFile_AndFails()
        {
            var v = Fixture();
            using var dir = new TempDir("torchhooks-task");
            string file = dir.File("libLibTorchSharp.so");
            File.WriteAllText(file, "a download that went wrong: an HTML error page, not a shared library");

            var (ok, engine) = RunTask(file, v.FakeOldPath);

            Assert.That(ok, Is.False);
            Assert.That(engine.Errors.Single(), Does.Contain(file).And.Contain("not an ELF file"));
        }

        // ---- the targets, run by MSBuild itself (the inline task is compiled by RoslynCodeTaskFactory) ----

        [Test]
        public void Targets_FixTheOutputCopy_UnlessOptedOut()
        {
            var v = Fixture();
            bool systemHasIt = ElfVersionNeeds.ReadDefinitions(SystemLibstdcxx()).Contains(Missing);
            using var fixOut = new TempDir("torchhooks-targets");
            using var optOut = new TempDir("torchhooks-targets");
            string Place(TempDir d)
            {
                // Stands in for libLibTorchSharp.so: it needs GLIBCXX_3.4.32 (from libthfakea.so).
                string p = Path.Combine(d.Sub("runtimes/linux-x64/native"), "libLibTorchSharp.so");
                File.Copy(v.UserPath, p);
                return p;
            }
            string fixedFile = Place(fixOut), untouchedFile = Place(optOut);
            byte[] original = File.ReadAllBytes(v.UserPath);
            string project = Path.Combine(BuildTestSupport.RepoRoot, "tests", "TorchHooks.Tests", "TorchHooks.Tests.csproj");

            // One MSBuild process runs the target twice (with and without the opt-out), so the
            // inline task is compiled once.
            string driver = fixOut.File("driver.proj");
            File.WriteAllText(driver, $@"<Project>
  <Target Name=""Run"">
    <MSBuild Projects=""{project}"" Targets=""TorchHooksFixNativeLoad"" Properties=""OutDir={fixOut.Path}/"" />
    <MSBuild Projects=""{project}"" Targets=""TorchHooksFixNativeLoad"" Properties=""OutDir={optOut.Path}/;TorchHooksFixNativeLoad=false"" />
  </Target>
</Project>
");
            var r = BuildTestSupport.MSBuildAsync(driver, "-t:Run", "-tl:off", "-m:1", "-v:m").GetAwaiter().GetResult();

            Assert.That(r.ExitCode, Is.EqualTo(0), r.Output);
            var log = r.StdOut.Split('\n').Where(l => l.Contains("TorchHooks:")).ToList();
            Assert.That(log, Has.Count.EqualTo(1), r.Output);
            Assert.That(log[0], Does.Contain(fixedFile));
            Assert.That(Need(fixedFile, Missing).IsWeak, Is.EqualTo(!systemHasIt));
            Assert.That(log[0], Does.Contain(systemHasIt ? "left as shipped" : $"marked its need for {Missing} weak"));
            Assert.That(File.ReadAllBytes(untouchedFile), Is.EqualTo(original));
        }
    }
}
