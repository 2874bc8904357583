using System;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>The native libraries TorchHooks binds functions from (both loaded by TorchSharp first).</summary>
    internal enum NativeLibraryId
    {
        /// <summary>libtorch's CPU library: <c>libtorch_cpu.so</c>, <c>torch_cpu.dll</c>, <c>libtorch_cpu.dylib</c>.</summary>
        TorchCpu,

        /// <summary>TorchSharp's C API: <c>libLibTorchSharp.so</c>, <c>LibTorchSharp.dll</c>, <c>libLibTorchSharp.dylib</c>.</summary>
        LibTorchSharp,
    }

    /// <summary>
    /// One native function TorchHooks binds: the library it lives in, its C/C++ signature and its exported name
    /// on each OS. Every binding resolves through this type — never through <see cref="NativeLibrary.TryGetExport"/>
    /// directly — so that the test suite can list every bound symbol (all static <see cref="NativeSymbol"/> fields of
    /// the assembly) and check each against the export tables of the runtime packages users install, per OS
    /// (<c>tests/TorchHooks.Tests/Goldens/native/exports.json</c>, made by <c>make_exports.py</c> beside it).
    /// </summary>
    /// <remarks>
    /// Adding a binding: declare it as a <c>static readonly NativeSymbol</c> field (C++: Itanium and MSVC names; C: one
    /// name), resolve it with <see cref="Resolve"/> or <see cref="TryResolve"/>, and run the native export tests; if
    /// its namespace is not in the golden file yet, add a pattern to <c>make_exports.py</c> and regenerate. The MSVC
    /// name encodes the return and parameter types (Itanium's encodes the parameters only), so a wrong signature
    /// fails there even though Linux would bind it.
    /// </remarks>
    internal sealed class NativeSymbol
    {
        /// <summary>The TorchSharp/libtorch pair every name here was checked against.</summary>
        internal const string CheckedAgainst = "TorchSharp 0.107.0 with libtorch 2.10.0";

        private NativeSymbol(NativeLibraryId library, string signature, string itanium, string msvc)
        {
            Library = library; Signature = signature; Itanium = itanium; Msvc = msvc;
        }

        /// <summary>The library that exports it.</summary>
        public NativeLibraryId Library { get; }

        /// <summary>The C or C++ declaration (for messages and review).</summary>
        public string Signature { get; }

        /// <summary>The exported name on Linux and macOS (Itanium C++ ABI, or the plain C name).</summary>
        public string Itanium { get; }

        /// <summary>The exported name on Windows (MSVC decoration, or the plain C name).</summary>
        public string Msvc { get; }

        /// <summary>A C++ function of libtorch: its Itanium (Linux, macOS) and MSVC (Windows) mangled names.</summary>
        public static NativeSymbol Cpp(NativeLibraryId library, string signature, string itanium, string msvc) =>
            new(library, signature, itanium, msvc);

        /// <summary>An <c>extern "C"</c> function: the same name on every OS.</summary>
        public static NativeSymbol C(NativeLibraryId library, string signature, string name) =>
            new(library, signature, name, name);

        /// <summary>The exported name on Windows (<paramref name="windows"/>) or on Linux/macOS.</summary>
        public string NameFor(bool windows) => windows ? Msvc : Itanium;

        /// <summary>The exported name on the OS this process runs on.</summary>
        public string CurrentName => NameFor(RuntimeInformation.IsOSPlatform(OSPlatform.Windows));

        /// <summary>The library's file name on the OS this process runs on.</summary>
        public static string FileName(NativeLibraryId library)
        {
            bool windows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
            bool mac = RuntimeInformation.IsOSPlatform(OSPlatform.OSX);
            return library switch
            {
                NativeLibraryId.TorchCpu => windows ? "torch_cpu.dll" : mac ? "libtorch_cpu.dylib" : "libtorch_cpu.so",
                _ => windows ? "LibTorchSharp.dll" : mac ? "libLibTorchSharp.dylib" : "libLibTorchSharp.so",
            };
        }

        /// <summary>The address of this function in <paramref name="library"/>, or <see cref="IntPtr.Zero"/>.</summary>
        public IntPtr TryResolve(IntPtr library, bool? windows = null)
        {
            var name = NameFor(windows ?? RuntimeInformation.IsOSPlatform(OSPlatform.Windows));
            return library != IntPtr.Zero && NativeLibrary.TryGetExport(library, name, out var address) ? address : IntPtr.Zero;
        }

        /// <summary>
        /// The address of this function in <paramref name="library"/>; a <see cref="NotSupportedException"/> naming
        /// the symbol, the library, the loaded TorchSharp version and the pair the names were checked against if it
        /// is not exported.
        /// </summary>
        public IntPtr Resolve(IntPtr library, bool? windows = null)
        {
            var address = TryResolve(library, windows);
            if (address != IntPtr.Zero) return address;
            var name = NameFor(windows ?? RuntimeInformation.IsOSPlatform(OSPlatform.Windows));
            throw new NotSupportedException(
                $"The loaded {FileName(Library)} does not export '{name}' ({Signature}). TorchHooks binds to " +
                $"{CheckedAgainst}; this process loaded TorchSharp {LoadedTorchSharpVersion} on " +
                $"{RuntimeInformation.OSDescription} ({RuntimeInformation.ProcessArchitecture}). Use that TorchSharp/libtorch " +
                "pair (another libtorch version may have renamed this function or changed its signature).");
        }

        /// <summary>The informational version of the TorchSharp assembly this process loaded.</summary>
        internal static string LoadedTorchSharpVersion =>
            typeof(torch).Assembly.GetName().Version?.ToString() ?? "(unknown)";

        /// <inheritdoc/>
        public override string ToString() => $"{Library}: {Signature}";
    }
}
