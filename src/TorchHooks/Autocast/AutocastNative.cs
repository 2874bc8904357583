using System;
using System.IO;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Binding to libtorch's own (dispatcher-level) autocast state functions in <c>libtorch_cpu</c>
    /// (namespace <c>at::autocast</c>). TorchSharp 0.107 does not wrap them, so they are resolved by
    /// their C++ mangled names from the <c>libtorch_cpu</c> that TorchSharp loaded, once per process.
    /// </summary>
    /// <remarks>
    /// <para>
    /// <c>c10::DeviceType</c> and <c>c10::ScalarType</c> are 8-bit enums whose values equal TorchSharp's
    /// <see cref="DeviceType"/> and <see cref="torch.ScalarType"/>; C++ <c>bool</c> is one byte. The
    /// signatures are those of libtorch 2.10.0 (TorchSharp 0.107.0).
    /// </para>
    /// <para>
    /// Every function here only reads or writes thread-local state of the calling OS thread.
    /// None of them may be called with a device type libtorch has no autocast dispatch key for:
    /// libtorch then throws a C++ exception, which would take the process down. Callers validate
    /// the device type first (<see cref="AutocastStack.CheckDevice"/>).
    /// </para>
    /// </remarks>
    internal static unsafe class AutocastNative
    {
        // Every name below is checked by the test suite against the export tables of libtorch-cpu-linux-x64,
        // libtorch-cpu-win-x64 and libtorch-cpu-osx-arm64 2.10.0 (tests/TorchHooks.Tests/Goldens/native/exports.json,
        // NativeExportTests); the Linux names are also resolved in the loaded library and run there. A name added here
        // is checked the same way as soon as it is a NativeSymbol field (see NativeSymbol). MSVC encodes the return
        // type: increment_nesting/decrement_nesting return int in libtorch 2.10 ("H"), not int64_t ("_J").
        internal static readonly NativeSymbol SetEnabled = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "void at::autocast::set_autocast_enabled(c10::DeviceType, bool)",
            "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb",
            "?set_autocast_enabled@autocast@at@@YAXW4DeviceType@c10@@_N@Z");
        internal static readonly NativeSymbol IsEnabled = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "bool at::autocast::is_autocast_enabled(c10::DeviceType)",
            "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE",
            "?is_autocast_enabled@autocast@at@@YA_NW4DeviceType@c10@@@Z");
        internal static readonly NativeSymbol SetDtype = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "void at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)",
            "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE",
            "?set_autocast_dtype@autocast@at@@YAXW4DeviceType@c10@@W4ScalarType@4@@Z");
        internal static readonly NativeSymbol GetDtype = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "c10::ScalarType at::autocast::get_autocast_dtype(c10::DeviceType)",
            "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE",
            "?get_autocast_dtype@autocast@at@@YA?AW4ScalarType@c10@@W4DeviceType@4@@Z");
        internal static readonly NativeSymbol IncrementNestingSymbol = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "int at::autocast::increment_nesting()",
            "_ZN2at8autocast17increment_nestingEv",
            "?increment_nesting@autocast@at@@YAHXZ");
        internal static readonly NativeSymbol DecrementNestingSymbol = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "int at::autocast::decrement_nesting()",
            "_ZN2at8autocast17decrement_nestingEv",
            "?decrement_nesting@autocast@at@@YAHXZ");
        internal static readonly NativeSymbol ClearCacheSymbol = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "void at::autocast::clear_cache()",
            "_ZN2at8autocast11clear_cacheEv",
            "?clear_cache@autocast@at@@YAXXZ");
        internal static readonly NativeSymbol SetCacheEnabled = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "void at::autocast::set_autocast_cache_enabled(bool)",
            "_ZN2at8autocast26set_autocast_cache_enabledEb",
            "?set_autocast_cache_enabled@autocast@at@@YAX_N@Z");
        internal static readonly NativeSymbol IsCacheEnabled = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "bool at::autocast::is_autocast_cache_enabled()",
            "_ZN2at8autocast25is_autocast_cache_enabledEv",
            "?is_autocast_cache_enabled@autocast@at@@YA_NXZ");

        internal static readonly NativeSymbol VersionSymbol = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "int64_t at::TensorBase::_version() const",
            "_ZNK2at10TensorBase8_versionEv",
            "?_version@TensorBase@at@@QEBA_JXZ");

        internal const string ExpectedLibTorch = NativeSymbol.CheckedAgainst;

        // The trivial TLS accessors run without a GC transition; clear_cache (takes a mutex and frees
        // tensors) runs with one.
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, byte, void> s_setEnabled;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, byte> s_isEnabled;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, sbyte, void> s_setDtype;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, sbyte> s_getDtype;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<int> s_increment;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<int> s_decrement;
        private static delegate* unmanaged[Cdecl]<void> s_clearCache;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<byte, void> s_setCacheEnabled;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<byte> s_isCacheEnabled;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long> s_version;

        private static volatile bool s_bound;

        /// <summary>The handle of libtorch_cpu once bound.</summary>
        internal static IntPtr TorchCpuHandle { get; private set; }
        private static readonly object s_lock = new();

        /// <summary>Binds the functions on first use; throws <see cref="NotSupportedException"/> if it can't.</summary>
        internal static void EnsureBound()
        {
            if (s_bound) return;
            lock (s_lock)
            {
                if (s_bound) return;
                var lib = LoadTorchCpu();
                TorchCpuHandle = lib;
                bool windows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
                s_setEnabled = (delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, byte, void>)Resolve(lib, SetEnabled, windows);
                s_isEnabled = (delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, byte>)Resolve(lib, IsEnabled, windows);
                s_setDtype = (delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, sbyte, void>)Resolve(lib, SetDtype, windows);
                s_getDtype = (delegate* unmanaged[Cdecl, SuppressGCTransition]<sbyte, sbyte>)Resolve(lib, GetDtype, windows);
                s_increment = (delegate* unmanaged[Cdecl, SuppressGCTransition]<int>)Resolve(lib, IncrementNestingSymbol, windows);
                s_decrement = (delegate* unmanaged[Cdecl, SuppressGCTransition]<int>)Resolve(lib, DecrementNestingSymbol, windows);
                s_clearCache = (delegate* unmanaged[Cdecl]<void>)Resolve(lib, ClearCacheSymbol, windows);
                s_setCacheEnabled = (delegate* unmanaged[Cdecl, SuppressGCTransition]<byte, void>)Resolve(lib, SetCacheEnabled, windows);
                s_isCacheEnabled = (delegate* unmanaged[Cdecl, SuppressGCTransition]<byte>)Resolve(lib, IsCacheEnabled, windows);
                s_version = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long>)Resolve(lib, VersionSymbol, windows);
                s_bound = true;
            }
        }

        /// <summary>The address of <paramref name="symbol"/> in <paramref name="library"/>, or a <see cref="NotSupportedException"/>.</summary>
        internal static IntPtr Resolve(IntPtr library, NativeSymbol symbol, bool windows) => symbol.Resolve(library, windows);

        private static string TorchCpuFileName => NativeSymbol.FileName(NativeLibraryId.TorchCpu);

        /// <summary>
        /// The handle of the libtorch_cpu TorchSharp uses. TorchSharp loads it first (by name, relative to
        /// TorchSharp.dll, or from its consolidated "cpu"/"cuda-*" folder next to TorchSharp.dll); asking the OS
        /// loader again returns the already-loaded library.
        /// </summary>
        private static IntPtr LoadTorchCpu()
        {
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new NotSupportedException(
                    $"Autocast needs TorchSharp's native libtorch, which failed to load: {e.Message}", e);
            }

            var torchAssembly = typeof(torch).Assembly;
            if (NativeLibrary.TryLoad("torch_cpu", torchAssembly, null, out var handle)) return handle;
            if (NativeLibrary.TryLoad(TorchCpuFileName, torchAssembly, null, out handle)) return handle;
            if (NativeLibrary.TryLoad(TorchCpuFileName, out handle)) return handle;

            var torchDir = Path.GetDirectoryName(torchAssembly.Location);
            if (!string.IsNullOrEmpty(torchDir) && Directory.Exists(torchDir))
            {
                foreach (var dir in Directory.EnumerateDirectories(torchDir))
                {
                    var name = Path.GetFileName(dir);
                    if (name != "cpu" && !name.StartsWith("cuda-", StringComparison.Ordinal)) continue;
                    var candidate = Path.Combine(dir, TorchCpuFileName);
                    if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out handle)) return handle;
                }
            }
            throw new NotSupportedException(
                $"Could not find {TorchCpuFileName}, the libtorch library TorchSharp loaded. Autocast binds to " +
                $"{ExpectedLibTorch}; reference the libtorch-cpu-* (or TorchSharp-cuda-*) package for this OS.");
        }

        internal static void SetAutocastEnabled(DeviceType device, bool enabled) => s_setEnabled((sbyte)device, enabled ? (byte)1 : (byte)0);
        internal static bool IsAutocastEnabled(DeviceType device) => s_isEnabled((sbyte)device) != 0;
        internal static void SetAutocastDtype(DeviceType device, torch.ScalarType dtype) => s_setDtype((sbyte)device, (sbyte)dtype);
        internal static torch.ScalarType GetAutocastDtype(DeviceType device) => (torch.ScalarType)s_getDtype((sbyte)device);
        internal static int IncrementNesting() => s_increment();
        internal static int DecrementNesting() => s_decrement();
        internal static void ClearAutocastCache() => s_clearCache();
        internal static void SetAutocastCacheEnabled(bool enabled) => s_setCacheEnabled(enabled ? (byte)1 : (byte)0);
        internal static bool IsAutocastCacheEnabled() => s_isCacheEnabled() != 0;

        /// <summary>
        /// libtorch's version counter of a tensor (PyTorch's <c>tensor._version</c>): every in-place change
        /// (<c>add_</c>, an optimizer step, <c>copy_</c> in <c>load_state_dict</c>) increments it. TorchSharp's tensor
        /// handle points at an <c>at::Tensor</c>, the <c>this</c> of <c>at::TensorBase::_version() const</c>.
        /// </summary>
        internal static long TensorVersion(torch.Tensor tensor) => s_version(tensor.Handle);

        /// <summary>libtorch's nesting counter for this thread (read by incrementing and decrementing it).</summary>
        internal static int CurrentNesting()
        {
            EnsureBound();
            var n = s_increment() - 1;
            s_decrement();
            return n;
        }
    }
}
