using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Runtime.Versioning;
using TorchHooks.Native;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>What <see cref="NativeLoading.Prepare"/> found and did.</summary>
    public enum NativeLoadAction
    {
        /// <summary>Nothing to do: not Linux x64, or the system libstdc++ defines GLIBCXX_3.4.32.</summary>
        NotNeeded,
        /// <summary>TorchSharp's native library was already loaded in this process.</summary>
        AlreadyLoaded,
        /// <summary>The copy TorchSharp will load (an application's output folder) was already fixed by the build step.</summary>
        AlreadyFixed,
        /// <summary>A load-fixed copy from the per-user cache folder was loaded; TorchSharp will use it.</summary>
        LoadedFixedCopy,
        /// <summary>No libLibTorchSharp.so and libtorch next to TorchSharp: the runtime package (e.g. <c>libtorch-cpu-linux-x64</c>) is not referenced (yet).</summary>
        RuntimeNotFound,
        /// <summary>The fix was turned off with the environment variable <c>TORCHHOOKS_FIX_NATIVE_LOAD=false</c>.</summary>
        OptedOut,
    }

    /// <summary>The outcome of <see cref="NativeLoading.Prepare"/>: what was done, with which files, in one sentence.</summary>
    public sealed class NativeLoadResult
    {
        internal NativeLoadResult(NativeLoadAction action, string message, string? source = null, string? loadedCopy = null)
        {
            Action = action; Message = message; Source = source; LoadedCopy = loadedCopy;
        }

        /// <summary>What was done.</summary>
        public NativeLoadAction Action { get; }
        /// <summary>One sentence saying what was found and done.</summary>
        public string Message { get; }
        /// <summary>The shipped libLibTorchSharp.so that was examined, if one was found.</summary>
        public string? Source { get; }
        /// <summary>The load-fixed copy that was loaded (<see cref="NativeLoadAction.LoadedFixedCopy"/> only).</summary>
        public string? LoadedCopy { get; }

        /// <inheritdoc />
        public override string ToString() => $"{Action}: {Message}";
    }

    /// <summary>
    /// Makes TorchSharp 0.107's native library load on systems whose libstdc++ predates GCC 13 (Debian 12,
    /// Ubuntu 22.04) in hosts where no build step runs: notebook kernels, scripts, and any host that
    /// loads native libraries straight from the NuGet cache. (Projects that reference the TorchHooks package
    /// are fixed at build time instead, in their own output folder.)
    /// </summary>
    /// <remarks>
    /// <para>
    /// <c>libLibTorchSharp.so</c> asks for libstdc++'s version <c>GLIBCXX_3.4.32</c> for one symbol it never
    /// calls. When the system libstdc++ lacks it, <see cref="Prepare"/> makes a copy of the shipped library
    /// with that one version need marked weak (<c>VER_FLG_WEAK</c>), keeps it in a per-user cache folder
    /// (<c>$XDG_CACHE_HOME/torchhooks/native/&lt;hash&gt;/</c>, default <c>~/.cache</c>), and loads it — after
    /// libtorch from the runtime package — before TorchSharp initialises; TorchSharp then finds the
    /// already-loaded library by its soname. The NuGet cache and system files are never written.
    /// </para>
    /// <para>
    /// Loading native code from a cache is a way in for anyone who can write there, so every folder from the
    /// cache root down must belong to the current user and be writable by nobody else (checked with
    /// <c>statx</c>, symbolic links refused), and the cached copy is compared byte for byte with a
    /// fresh fix of its source before it is loaded; a mismatch is rebuilt. The notebook extension of the
    /// TorchHooks package calls <see cref="Prepare"/> when the package is loaded; scripts call it (or
    /// <see cref="EnsureTorchSharpLoaded"/>) before their first tensor.
    /// </para>
    /// </remarks>
    public static class NativeLoading
    {
        /// <summary>The libstdc++ version TorchSharp 0.107's native library asks for.</summary>
        public const string RequiredVersion = "GLIBCXX_3.4.32";

        /// <summary>Set this environment variable to <c>false</c> to turn the runtime fix off.</summary>
        public const string OptOutVariable = "TORCHHOOKS_FIX_NATIVE_LOAD";

        private const string LibraryFile = "libLibTorchSharp.so";
        private static readonly object s_gate = new();
        private static NativeLoadResult? s_done;

        /// <summary>
        /// Checks whether TorchSharp's native library can load here and, if the only obstacle is the
        /// <c>GLIBCXX_3.4.32</c> need, loads a load-fixed copy. Safe to call any number of times from any thread;
        /// the work is done once per process (a <see cref="NativeLoadAction.RuntimeNotFound"/> outcome is retried
        /// on the next call, since a later notebook cell may add the runtime package).
        /// </summary>
        /// <exception cref="InvalidOperationException">The fix is needed but cannot be applied safely (for example the
        /// cache folder is writable by other users); the message says which path and how to fix it.</exception>
        public static NativeLoadResult Prepare()
        {
            lock (s_gate)
            {
                if (s_done is not null) return s_done;
                var result = PrepareCore();
                if (result.Action != NativeLoadAction.RuntimeNotFound) s_done = result;
                return result;
            }
        }

        /// <summary>
        /// <see cref="Prepare"/>, then initialises TorchSharp's CPU backend. If that still fails on a system
        /// whose libstdc++ lacks <c>GLIBCXX_3.4.32</c>, the exception names the cause and the fix instead of
        /// TorchSharp's message about a missing package (TorchSharp's exception is the inner exception).
        /// </summary>
        public static NativeLoadResult EnsureTorchSharpLoaded()
        {
            var result = Prepare();
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (result.Action != NativeLoadAction.NotNeeded && SystemLacksRequiredVersion(out _))
            {
                throw new InvalidOperationException(FailureMessage(result), e);
            }
            return result;
        }

        internal static string FailureMessage(NativeLoadResult result)
        {
            SystemLacksRequiredVersion(out var system);
            return $"TorchSharp's native library {LibraryFile} did not load. The cause is this system's libstdc++ " +
                $"({system ?? "libstdc++.so.6, not found"}), which lacks {RequiredVersion} (GCC 13) - not a missing package. " +
                $"TorchHooks' fix: {result.Message} " +
                "To fix it: in a project, reference the TorchHooks package (its build step fixes the output copy; do not set " +
                "TorchHooksFixNativeLoad=false); in a notebook, load TorchHooks and the runtime in the first cell " +
                "(#r \"nuget: TorchHooks, ...\" and #r \"nuget: libtorch-cpu-linux-x64, 2.10.0\") before any tensor; in a script, call " +
                "TorchHooks.NativeLoading.Prepare() before the first tensor. See docs/native-loading.md.";
        }

        private static NativeLoadResult PrepareCore()
        {
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
                return new NativeLoadResult(NativeLoadAction.NotNeeded, "not Linux x64: TorchSharp's native library has no GLIBCXX_3.4.32 problem here.");
            if (string.Equals(Environment.GetEnvironmentVariable(OptOutVariable), "false", StringComparison.OrdinalIgnoreCase))
                return new NativeLoadResult(NativeLoadAction.OptedOut, $"{OptOutVariable}=false: nothing was done.");
            if (!SystemLacksRequiredVersion(out var system))
                return new NativeLoadResult(NativeLoadAction.NotNeeded, $"{system} provides {RequiredVersion}; nothing to fix.");
            string? loaded = LoadedLibraryPath();
            if (loaded is not null)
                return new NativeLoadResult(NativeLoadAction.AlreadyLoaded, $"{loaded} is already loaded in this process.", loaded);

            var (source, libtorchDir) = FindShippedLibrary();
            if (source is null || libtorchDir is null)
                return new NativeLoadResult(NativeLoadAction.RuntimeNotFound,
                    "no libLibTorchSharp.so with libtorch beside TorchSharp.dll or in the NuGet package folders: reference the runtime package " +
                    "(e.g. libtorch-cpu-linux-x64 2.10.0) together with TorchHooks.", source);

            byte[] fixedBytes = ElfVersionNeeds.ReadWeakened(source, RequiredVersion, out var outcome);
            if (outcome != WeakenOutcome.Weakened)
                return new NativeLoadResult(NativeLoadAction.AlreadyFixed,
                    $"{source} needs no change ({(outcome == WeakenOutcome.AlreadyWeak ? "its need is already weak" : "it does not need " + RequiredVersion)}).", source);

            string copy = CachedCopy(fixedBytes, CacheRoot());
            // libtorch first (libtorch.so pulls libtorch_cpu.so and libc10.so through its $ORIGIN run path), so the
            // copy's needs are met by soname; TorchSharp's own load of "LibTorchSharp" then finds the copy by its soname.
            NativeLibrary.Load(Path.Combine(libtorchDir, "libtorch.so"));
            NativeLibrary.Load(copy);
            return new NativeLoadResult(NativeLoadAction.LoadedFixedCopy,
                $"{system} lacks {RequiredVersion}; loaded {copy}, a copy of {source} with that need marked weak.", source, copy);
        }

        /// <summary>True when the system libstdc++ (as the dynamic loader would pick it) does not define GLIBCXX_3.4.32.</summary>
        internal static bool SystemLacksRequiredVersion(out string? system)
        {
            system = ElfVersionNeeds.FindSystemLibrary("libstdc++.so.6");
            if (system is null || !File.Exists(system)) return true;
            try { return !ElfVersionNeeds.ReadDefinitions(system).Contains(RequiredVersion); }
            catch (InvalidDataException) { return true; }
        }

        private static string? LoadedLibraryPath()
        {
            try
            {
                foreach (var line in File.ReadLines("/proc/self/maps"))
                {
                    int slash = line.IndexOf('/');
                    if (slash >= 0 && line.EndsWith("/" + LibraryFile, StringComparison.Ordinal)) return line.Substring(slash);
                }
            }
            catch (IOException) { }
            return null;
        }

        /// <summary>
        /// The libLibTorchSharp.so TorchSharp would load and the folder holding libtorch.so: an application's
        /// output folder, or (notebook kernels, scripts) the NuGet package folders beside TorchSharp.dll.
        /// </summary>
        internal static (string? Source, string? LibtorchDir) FindShippedLibrary()
        {
            string torchSharpDir = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? "";
            var folders = new List<string>
            {
                Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"),
                AppContext.BaseDirectory,
                Path.Combine(torchSharpDir, "runtimes", "linux-x64", "native"),
                torchSharpDir,
            };
            foreach (var dir in folders)
            {
                string lib = Path.Combine(dir, LibraryFile);
                if (File.Exists(lib) && File.Exists(Path.Combine(dir, "libtorch.so"))) return (lib, dir);
            }
            // NuGet package layout: <packages>/torchsharp/<version>/lib/<tfm>/TorchSharp.dll
            var tfmDir = new DirectoryInfo(torchSharpDir);
            var packageDir = tfmDir.Parent?.Parent;       // <packages>/torchsharp/<version>
            var packagesRoot = packageDir?.Parent?.Parent; // <packages>
            if (packageDir is null || packagesRoot is null) return (null, null);
            string shipped = Path.Combine(packageDir.FullName, "runtimes", "linux-x64", "native", LibraryFile);
            if (!File.Exists(shipped)) return (null, null);
            string libtorchVersion = LibtorchPackageVersion();
            foreach (var root in PackageRoots(packagesRoot.FullName))
            {
                string dir = Path.Combine(root, "libtorch-cpu-linux-x64", libtorchVersion, "runtimes", "linux-x64", "native");
                if (File.Exists(Path.Combine(dir, "libtorch.so"))) return (shipped, dir);
            }
            return (shipped, null);
        }

        /// <summary>
        /// The libtorch package version TorchSharp was built against (2.10.0 for 0.107.0), read from TorchSharp's
        /// metadata: touching any member of <c>torch</c> would run its type initializer, which loads the native
        /// library - the very thing that must not happen before the fix (a failed type initializer is final).
        /// </summary>
        private static string LibtorchPackageVersion()
        {
            string raw = TorchSharpInternals.LibtorchPackageVersion(assumed: "2.10.0.0");
            var parts = raw.Split('.');
            return parts.Length == 4 && parts[3] == "0" ? string.Join(".", parts, 0, 3) : raw;
        }

        private static IEnumerable<string> PackageRoots(string besideTorchSharp)
        {
            yield return besideTorchSharp;
            var env = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
            if (!string.IsNullOrEmpty(env)) yield return env!;
            var fallback = Environment.GetEnvironmentVariable("NUGET_FALLBACK_PACKAGES");
            if (!string.IsNullOrEmpty(fallback))
                foreach (var f in fallback!.Split(Path.PathSeparator)) yield return f;
            yield return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        }

        /// <summary>Writes (or verifies) the fixed copy in the per-user cache and returns its path.</summary>
        [SupportedOSPlatform("linux")]
        internal static string CachedCopy(byte[] fixedBytes, string cacheRoot)
        {
            string hash = Convert.ToHexString(SHA256.HashData(fixedBytes)).ToLowerInvariant();
            string dir = Path.Combine(cacheRoot, "torchhooks", "native", hash.Substring(0, 32));
            foreach (var folder in new[] { Path.Combine(cacheRoot, "torchhooks"), Path.Combine(cacheRoot, "torchhooks", "native"), dir })
            {
                if (!Directory.Exists(folder))
                    Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            // Every folder from the cache root down must be ours and writable by nobody else.
            UnixSecurity.RequirePrivate(cacheRoot, directory: true, allowRootOwner: true);
            UnixSecurity.RequirePrivate(Path.Combine(cacheRoot, "torchhooks"), directory: true);
            UnixSecurity.RequirePrivate(Path.Combine(cacheRoot, "torchhooks", "native"), directory: true);
            UnixSecurity.RequirePrivate(dir, directory: true);

            string copy = Path.Combine(dir, LibraryFile);
            if (File.Exists(copy))
            {
                UnixSecurity.RequirePrivate(copy, directory: false);
                if (Matches(copy, fixedBytes)) return copy;
            }
            // Write a new file next to it and rename it over the old one: a concurrent process sees either
            // the old or the new complete file.
            string temp = Path.Combine(dir, $"{LibraryFile}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
            try
            {
                using (var f = new FileStream(temp, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew, Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                }))
                    f.Write(fixedBytes, 0, fixedBytes.Length);
                File.Move(temp, copy, overwrite: true);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
            UnixSecurity.RequirePrivate(copy, directory: false);
            if (!Matches(copy, fixedBytes))
                throw new InvalidOperationException($"The load-fixed copy {copy} changed while it was written; it was not loaded. Remove {dir} and try again.");
            return copy;
        }

        private static bool Matches(string file, byte[] expected) => File.ReadAllBytes(file).AsSpan().SequenceEqual(expected);

        [SupportedOSPlatform("linux")]
        internal static string CacheRoot()
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)) return xdg!;
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home))
                throw new InvalidOperationException("Neither XDG_CACHE_HOME nor HOME is set, so TorchHooks has no per-user folder for the load-fixed copy of libLibTorchSharp.so. Set HOME or XDG_CACHE_HOME.");
            string cache = Path.Combine(home, ".cache");
            if (!Directory.Exists(cache))
                Directory.CreateDirectory(cache, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return cache;
        }
    }
}
