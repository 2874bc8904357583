// Build-time fix for loading TorchSharp 0.107 on Debian 12 / Ubuntu 22.04.
//
// libLibTorchSharp.so declares a need for the libstdc++ version GLIBCXX_3.4.32 (GCC 13) through
// one symbol it never calls. Older systems ship libstdc++ up to GLIBCXX_3.4.30, so the dynamic
// loader refuses the library. Marking that one version need VER_FLG_WEAK in the output copy of the
// library makes a missing version non-fatal (glibc's rule for weak version needs).
//
// One source, three compilations: by MSBuild's RoslynCodeTaskFactory (TorchHooks.targets, shipped in
// the package's buildTransitive/ folder) as the `MakeVersionNeedWeak` task; into TorchHooks.dll with
// TORCHHOOKS_RUNTIME defined (namespace TorchHooks.Native, no MSBuild types), where the runtime fix
// for hosts without a build step (notebook kernels) uses the same editor; and into the test project.
// Why not an ELF library: the edit flips one bit of a 16-bit field in place; a library that
// re-lays out the file (LibObjectFile) risks more than it saves, and ELFSharp only reads. The
// reader below handles exactly the structures it needs, little-endian ELF32/ELF64.
#nullable enable
using System;
using System.Collections.Generic;
using System.Linq;
using System.Diagnostics;
using System.IO;
using System.Text;
#if !TORCHHOOKS_RUNTIME
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

#if TORCHHOOKS_RUNTIME
namespace TorchHooks.Native
#else
namespace TorchHooks.Build
#endif
{
    /// <summary>One version need (Elf_Vernaux) of an ELF file: which library, which version, its flags.</summary>
    internal sealed class ElfVersionNeed
    {
        /// <summary>Creates a record of one version need.</summary>
        public ElfVersionNeed(string file, string version, ushort flags, long flagsOffset)
        {
            File = file; Version = version; Flags = flags; FlagsOffset = flagsOffset;
        }
        /// <summary>The needed library (vn_file), e.g. <c>libstdc++.so.6</c>.</summary>
        public string File { get; }
        /// <summary>The needed version name (vna_name), e.g. <c>GLIBCXX_3.4.32</c>.</summary>
        public string Version { get; }
        /// <summary>vna_flags; bit 0x2 is VER_FLG_WEAK.</summary>
        public ushort Flags { get; }
        /// <summary>File offset of vna_flags.</summary>
        public long FlagsOffset { get; }
        /// <summary>True when the need is weak (a missing version is not fatal).</summary>
        public bool IsWeak => (Flags & ElfVersionNeeds.VerFlagWeak) != 0;
    }

    /// <summary>What <see cref="ElfVersionNeeds.MarkNeedWeak"/> did.</summary>
    internal enum WeakenOutcome
    {
        /// <summary>The need existed and was strong; it is now weak.</summary>
        Weakened,
        /// <summary>The need was already weak; the file was not written.</summary>
        AlreadyWeak,
        /// <summary>The file has no need for that version; the file was not written.</summary>
        NotNeeded,
    }

    /// <summary>Reads and edits the GNU version sections (.gnu.version_r / .gnu.version_d) of an ELF file.</summary>
    internal static class ElfVersionNeeds
    {
        /// <summary>VER_FLG_WEAK from elf.h.</summary>
        public const ushort VerFlagWeak = 0x2;
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;

        private sealed class Section
        {
            public uint Type; public long Offset; public long Size; public uint Link; public uint Info;
        }

        private static byte[] ReadElf(string path, out bool is64)
        {
            if (path is null) throw new ArgumentNullException(nameof(path));
            byte[] data = System.IO.File.ReadAllBytes(path);
            if (data.Length < 52 || data[0] != 0x7f || data[1] != (byte)'E' || data[2] != (byte)'L' || data[3] != (byte)'F')
                throw new InvalidDataException($"'{path}' is not an ELF file (no \\x7fELF magic). Pass the path of a shared library such as libLibTorchSharp.so.");
            if (data[4] != 1 && data[4] != 2)
                throw new InvalidDataException($"'{path}' has an unknown ELF class {data[4]}; only ELF32 and ELF64 are supported.");
            if (data[5] != 1)
                throw new InvalidDataException($"'{path}' is a big-endian ELF file; only little-endian files are supported.");
            is64 = data[4] == 2;
            if (is64 && data.Length < 64)
                throw new InvalidDataException($"'{path}' is truncated: shorter than an ELF64 header.");
            return data;
        }

        private static List<Section> Sections(byte[] d, bool is64, string path)
        {
            long shoff = is64 ? (long)BitConverter.ToUInt64(d, 0x28) : BitConverter.ToUInt32(d, 0x20);
            int shentsize = BitConverter.ToUInt16(d, is64 ? 0x3A : 0x2E);
            int shnum = BitConverter.ToUInt16(d, is64 ? 0x3C : 0x30);
            var list = new List<Section>(shnum);
            if (shoff == 0 || shnum == 0) return list;
            if (shentsize < (is64 ? 64 : 40))
                throw new InvalidDataException($"'{path}' is malformed: its section header entries are {shentsize} bytes, shorter than an ELF{(is64 ? 64 : 32)} section header.");
            if (shoff < 0 || shoff + (long)shentsize * shnum > d.Length)
                throw new InvalidDataException($"'{path}' is truncated: its section header table lies outside the file.");
            for (int i = 0; i < shnum; i++)
            {
                long o = shoff + (long)i * shentsize;
                var s = new Section { Type = BitConverter.ToUInt32(d, (int)o + 4) };
                if (is64)
                {
                    s.Offset = (long)BitConverter.ToUInt64(d, (int)o + 24);
                    s.Size = (long)BitConverter.ToUInt64(d, (int)o + 32);
                    s.Link = BitConverter.ToUInt32(d, (int)o + 40);
                    s.Info = BitConverter.ToUInt32(d, (int)o + 44);
                }
                else
                {
                    s.Offset = BitConverter.ToUInt32(d, (int)o + 16);
                    s.Size = BitConverter.ToUInt32(d, (int)o + 20);
                    s.Link = BitConverter.ToUInt32(d, (int)o + 24);
                    s.Info = BitConverter.ToUInt32(d, (int)o + 28);
                }
                list.Add(s);
            }
            return list;
        }

        private static string CString(byte[] d, Section strtab, long offset, string path)
        {
            long start = strtab.Offset + offset;
            if (offset < 0 || start >= strtab.Offset + strtab.Size || start >= d.Length)
                throw new InvalidDataException($"'{path}': a version name points outside its string table.");
            long end = start;
            while (end < d.Length && d[end] != 0) end++;
            return Encoding.UTF8.GetString(d, (int)start, (int)(end - start));
        }

        private static void Check(byte[] d, long offset, int size, string path)
        {
            if (offset < 0 || offset + size > d.Length)
                throw new InvalidDataException($"'{path}': a version record lies outside the file.");
        }

        /// <summary>Lists every version need of the ELF file at <paramref name="path"/>.</summary>
        /// <exception cref="InvalidDataException">The file is not a little-endian ELF file or is malformed.</exception>
        public static IReadOnlyList<ElfVersionNeed> ReadNeeds(string path)
        {
            byte[] d = ReadElf(path, out bool is64);
            return ReadNeeds(d, is64, path);
        }

        private static List<ElfVersionNeed> ReadNeeds(byte[] d, bool is64, string path)
        {
            var result = new List<ElfVersionNeed>();
            var sections = Sections(d, is64, path);
            foreach (var s in sections)
            {
                if (s.Type != ShtGnuVerneed) continue;
                if (s.Link >= sections.Count) throw new InvalidDataException($"'{path}': .gnu.version_r links to a missing string table.");
                var strtab = sections[(int)s.Link];
                long vn = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    Check(d, vn, 16, path);
                    ushort cnt = BitConverter.ToUInt16(d, (int)vn + 2);
                    string file = CString(d, strtab, BitConverter.ToUInt32(d, (int)vn + 4), path);
                    long aux = vn + BitConverter.ToUInt32(d, (int)vn + 8);
                    for (int j = 0; j < cnt; j++)
                    {
                        Check(d, aux, 16, path);
                        ushort flags = BitConverter.ToUInt16(d, (int)aux + 4);
                        string name = CString(d, strtab, BitConverter.ToUInt32(d, (int)aux + 8), path);
                        result.Add(new ElfVersionNeed(file, name, flags, aux + 4));
                        uint auxNext = BitConverter.ToUInt32(d, (int)aux + 12);
                        if (auxNext == 0) break;
                        aux += auxNext;
                    }
                    uint next = BitConverter.ToUInt32(d, (int)vn + 12);
                    if (next == 0) break;
                    vn += next;
                }
            }
            return result;
        }

        /// <summary>Lists the version names the ELF file defines (.gnu.version_d), e.g. GLIBCXX_3.4.30 for libstdc++.</summary>
        public static IReadOnlyList<string> ReadDefinitions(string path)
        {
            byte[] d = ReadElf(path, out bool is64);
            var result = new List<string>();
            var sections = Sections(d, is64, path);
            foreach (var s in sections)
            {
                if (s.Type != ShtGnuVerdef) continue;
                if (s.Link >= sections.Count) throw new InvalidDataException($"'{path}': .gnu.version_d links to a missing string table.");
                var strtab = sections[(int)s.Link];
                long vd = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    Check(d, vd, 20, path);
                    long aux = vd + BitConverter.ToUInt32(d, (int)vd + 12);
                    Check(d, aux, 8, path);
                    result.Add(CString(d, strtab, BitConverter.ToUInt32(d, (int)aux), path));
                    uint next = BitConverter.ToUInt32(d, (int)vd + 16);
                    if (next == 0) break;
                    vd += next;
                }
            }
            return result;
        }

        /// <summary>
        /// Reads the ELF file at <paramref name="path"/> and returns its bytes with every need for
        /// <paramref name="version"/> marked weak; the file itself is not written. <paramref name="outcome"/>
        /// says whether anything changed.
        /// </summary>
        public static byte[] ReadWeakened(string path, string version, out WeakenOutcome outcome)
        {
            RequireVersion(version);
            byte[] d = ReadElf(path, out bool is64);
            outcome = WeakenInMemory(d, is64, path, version);
            return d;
        }

        private static void RequireVersion(string version)
        {
            if (string.IsNullOrEmpty(version)) throw new ArgumentException("Pass the version name to weaken, e.g. \"GLIBCXX_3.4.32\".", nameof(version));
        }

        private static WeakenOutcome WeakenInMemory(byte[] d, bool is64, string path, string version)
        {
            var needs = ReadNeeds(d, is64, path).FindAll(n => n.Version == version);
            if (needs.Count == 0) return WeakenOutcome.NotNeeded;
            if (needs.TrueForAll(n => n.IsWeak)) return WeakenOutcome.AlreadyWeak;
            foreach (var n in needs)
            {
                ushort flags = (ushort)(n.Flags | VerFlagWeak);
                d[n.FlagsOffset] = (byte)(flags & 0xff);
                d[n.FlagsOffset + 1] = (byte)(flags >> 8);
            }
            return WeakenOutcome.Weakened;
        }

        /// <summary>
        /// Marks every need for <paramref name="version"/> in <paramref name="path"/> weak. The file is
        /// rewritten through a temporary file and a rename, so a hard link to another copy (for example
        /// in the NuGet cache) is never modified. Idempotent.
        /// </summary>
        public static WeakenOutcome MarkNeedWeak(string path, string version)
        {
            RequireVersion(version);
            byte[] d = ReadElf(path, out bool is64);
            var outcome = WeakenInMemory(d, is64, path, version);
            if (outcome != WeakenOutcome.Weakened) return outcome;
            // Copy first (keeps the file mode), write the edited bytes into the copy, then rename it
            // over the original: a hard-linked original is replaced, never written through.
            // (This file must also compile for netstandard2.0, MSBuild's inline-task target.)
            // The original write time is kept, so MSBuild's incremental copy sees an unchanged file.
            string temp = path + ".torchhooks-tmp";
            DateTime written = System.IO.File.GetLastWriteTimeUtc(path);
            System.IO.File.Copy(path, temp, overwrite: true);
            try
            {
                using (var f = new FileStream(temp, FileMode.Truncate, FileAccess.Write))
                    f.Write(d, 0, d.Length);
                System.IO.File.Replace(temp, path, destinationBackupFileName: null);
                System.IO.File.SetLastWriteTimeUtc(path, written);
            }
            finally
            {
                if (System.IO.File.Exists(temp)) System.IO.File.Delete(temp);
            }
            return WeakenOutcome.Weakened;
        }

        /// <summary>
        /// Finds the library the dynamic loader would pick for <paramref name="soname"/> from the
        /// loader cache (<c>ldconfig -p</c>), preferring 64-bit entries, then well-known folders.
        /// Returns null when none is found.
        /// </summary>
        public static string? FindSystemLibrary(string soname)
        {
            try
            {
                foreach (var ldconfig in new[] { "/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig" })
                {
                    if (ldconfig.StartsWith("/") && !System.IO.File.Exists(ldconfig)) continue;
                    var psi = new ProcessStartInfo(ldconfig, "-p") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                    using var p = Process.Start(psi);
                    if (p is null) continue;
                    // Drain stderr concurrently: a full, unread stderr pipe would block ldconfig.
                    var errors = p.StandardError.ReadToEndAsync();
                    string output = p.StandardOutput.ReadToEnd();
                    p.WaitForExit();
                    errors.Wait();
                    string? any = null;
                    foreach (var raw in output.Split('\n'))
                    {
                        var line = raw.Trim();
                        if (!line.StartsWith(soname + " ")) continue;
                        int arrow = line.IndexOf("=> ", StringComparison.Ordinal);
                        if (arrow < 0) continue;
                        string candidate = line.Substring(arrow + 3).Trim();
                        if (line.Contains("x86-64") || line.Contains("AArch64") || line.Contains("64bit")) return candidate;
                        any ??= candidate;
                    }
                    if (any != null) return any;
                    break;
                }
            }
            catch (System.ComponentModel.Win32Exception) { /* no ldconfig: fall through to folders */ }
            foreach (var dir in new[] { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib" })
            {
                string candidate = Path.Combine(dir, soname);
                if (System.IO.File.Exists(candidate)) return candidate;
            }
            return null;
        }
    }

#if !TORCHHOOKS_RUNTIME
    /// <summary>
    /// MSBuild task: for each of <see cref="Files"/>, if it needs <see cref="Version"/> of
    /// <see cref="Library"/> and the system's copy of that library (or <see cref="SystemLibrary"/>)
    /// does not define it, marks the need weak in that file. Logs one line per file.
    /// </summary>
    public sealed class MakeVersionNeedWeak : Task
    {
        /// <summary>The ELF files to check and fix (output copies, never package-cache files).</summary>
        [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
        /// <summary>The version name, e.g. GLIBCXX_3.4.32.</summary>
        [Required] public string Version { get; set; } = "";
        /// <summary>The soname that should provide the version.</summary>
        public string Library { get; set; } = "libstdc++.so.6";
        /// <summary>Optional explicit path of the system library to check (default: found via ldconfig).</summary>
        public string? SystemLibrary { get; set; }

        /// <inheritdoc />
        public override bool Execute()
        {
            string? system = string.IsNullOrEmpty(SystemLibrary) ? ElfVersionNeeds.FindSystemLibrary(Library) : SystemLibrary;
            bool systemHasIt = false;
            if (system != null && System.IO.File.Exists(system))
            {
                try { systemHasIt = ElfVersionNeeds.ReadDefinitions(system).Contains(Version); }
                catch (InvalidDataException e) { Log.LogMessage(MessageImportance.High, $"TorchHooks: could not read {system} ({e.Message}); assuming it lacks {Version}."); }
            }
            foreach (var item in Files)
            {
                string file = item.ItemSpec;
                try
                {
                    if (systemHasIt)
                    {
                        Log.LogMessage(MessageImportance.High, $"TorchHooks: {system} provides {Version}; {file} left as shipped.");
                        continue;
                    }
                    var outcome = ElfVersionNeeds.MarkNeedWeak(file, Version);
                    string what = outcome switch
                    {
                        WeakenOutcome.Weakened => $"marked its need for {Version} weak",
                        WeakenOutcome.AlreadyWeak => $"its need for {Version} is already weak",
                        _ => $"it does not need {Version}; left as shipped",
                    };
                    Log.LogMessage(MessageImportance.High, $"TorchHooks: {system ?? Library + " (not found)"} lacks {Version}; {file}: {what}.");
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogError($"TorchHooks: cannot fix native library '{file}': {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
