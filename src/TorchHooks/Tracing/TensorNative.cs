using System;
using System.Runtime.InteropServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The tracer's reads of a tensor's shape, dtype, device and grad flag, straight from TorchSharp's native library
    /// (<c>LibTorchSharp</c>: <c>THSTensor_ndimension</c>, <c>THSTensor_size</c>, <c>THSTensor_type</c>,
    /// <c>THSTensor_device_type</c>, <c>THSTensor_device_index</c>, <c>THSTensor_requires_grad</c>) through function
    /// pointers that skip the GC transition: each is a field read of libtorch's <c>TensorImpl</c> that neither blocks,
    /// allocates nor calls back, so it costs a few nanoseconds instead of a P/Invoke with a transition and
    /// TorchSharp's error check (<c>tensor.shape</c> also allocates and calls back into managed code per call).
    /// </summary>
    /// <remarks>
    /// The library is found as TorchSharp's own P/Invokes find it (<see cref="NativeLibrary.TryLoad(string, System.Reflection.Assembly, DllImportSearchPath?, out IntPtr)"/>
    /// for TorchSharp's assembly), once per process. If an export is missing (another TorchSharp build), the tracer
    /// falls back to TorchSharp's properties: same values, slower.
    /// </remarks>
    internal static unsafe class TensorNative
    {
        /// <summary>At most this many dimensions are read per tensor (more are cut, and the info says so).</summary>
        public const int MaxRank = 8;

        // TorchSharp's C API (extern "C", the same name on every OS); checked against the export tables of TorchSharp
        // 0.107.0's runtimes/*/native by NativeExportTests, like every NativeSymbol.
        internal static readonly NativeSymbol Ndimension = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int64_t THSTensor_ndimension(const Tensor tensor)", "THSTensor_ndimension");
        internal static readonly NativeSymbol Size = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int64_t THSTensor_size(const Tensor tensor, const int64_t dim)", "THSTensor_size");
        internal static readonly NativeSymbol Type = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int8_t THSTensor_type(const Tensor tensor)", "THSTensor_type");
        internal static readonly NativeSymbol DeviceTypeOf = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int THSTensor_device_type(const Tensor tensor)", "THSTensor_device_type");
        internal static readonly NativeSymbol DeviceIndex = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int THSTensor_device_index(const Tensor tensor)", "THSTensor_device_index");
        internal static readonly NativeSymbol RequiresGrad = NativeSymbol.C(NativeLibraryId.LibTorchSharp,
            "int THSTensor_requires_grad(const Tensor tensor)", "THSTensor_requires_grad");

        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long> s_ndim;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long, long> s_size;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, sbyte> s_type;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int> s_deviceType;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int> s_deviceIndex;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int> s_requiresGrad;
        private static readonly bool s_bound = Bind();

        /// <summary>Whether the direct reads are bound (else callers use TorchSharp's properties).</summary>
        public static bool Bound => s_bound;

        private static bool Bind()
        {
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
                if (!NativeLibrary.TryLoad("LibTorchSharp", typeof(torch).Assembly, null, out var lib)) return false;
                var ndim = Ndimension.TryResolve(lib);
                var size = Size.TryResolve(lib);
                var type = Type.TryResolve(lib);
                var deviceType = DeviceTypeOf.TryResolve(lib);
                var deviceIndex = DeviceIndex.TryResolve(lib);
                var requiresGrad = RequiresGrad.TryResolve(lib);
                if (ndim == IntPtr.Zero || size == IntPtr.Zero || type == IntPtr.Zero || deviceType == IntPtr.Zero
                    || deviceIndex == IntPtr.Zero || requiresGrad == IntPtr.Zero) return false;
                s_ndim = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long>)ndim;
                s_size = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, long, long>)size;
                s_type = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, sbyte>)type;
                s_deviceType = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int>)deviceType;
                s_deviceIndex = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int>)deviceIndex;
                s_requiresGrad = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int>)requiresGrad;
                return true;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or TypeInitializationException or NotSupportedException)
            {
                return false;
            }
        }

        /// <summary>Reads <paramref name="tensor"/>'s rank, dtype, device and grad flag, and its first <see cref="MaxRank"/> sizes into <paramref name="sizes"/>.</summary>
        public static void Read(Tensor tensor, out TensorHeader header, Span<long> sizes)
        {
            if (!s_bound) { ReadManaged(tensor, out header, sizes); return; }
            var h = tensor.Handle;
            int rank = (int)s_ndim(h);
            int n = Math.Min(rank, sizes.Length);
            for (int i = 0; i < n; i++) sizes[i] = s_size(h, i);
            var deviceType = (DeviceType)s_deviceType(h);
            header = new TensorHeader(rank, (torch.ScalarType)s_type(h), deviceType,
                deviceType == DeviceType.CPU ? -1 : s_deviceIndex(h), s_requiresGrad(h) != 0);
        }

        private static void ReadManaged(Tensor tensor, out TensorHeader header, Span<long> sizes)
        {
            var shape = tensor.shape;
            int n = Math.Min(shape.Length, sizes.Length);
            for (int i = 0; i < n; i++) sizes[i] = shape[i];
            var deviceType = tensor.device_type;
            header = new TensorHeader(shape.Length, tensor.dtype, deviceType, deviceType == DeviceType.CPU ? -1 : tensor.device_index, tensor.requires_grad);
        }
    }

    /// <summary>A tensor's rank, dtype, device and grad flag, as <see cref="TensorNative.Read"/> reads them (8 bytes, no references).</summary>
    internal readonly struct TensorHeader
    {
        public readonly int Rank;
        private readonly short _deviceIndex;
        private readonly sbyte _dtype;
        private readonly byte _deviceTypeAndGrad;

        public TensorHeader(int rank, torch.ScalarType dtype, DeviceType deviceType, int deviceIndex, bool requiresGrad)
        {
            Rank = rank; _dtype = (sbyte)dtype; _deviceIndex = (short)deviceIndex;
            _deviceTypeAndGrad = (byte)(((int)deviceType & 0x7F) | (requiresGrad ? 0x80 : 0));
        }

        public torch.ScalarType Dtype => (torch.ScalarType)_dtype;
        public DeviceType DeviceType => (DeviceType)(_deviceTypeAndGrad & 0x7F);
        public int DeviceIndex => _deviceIndex;
        public bool RequiresGrad => (_deviceTypeAndGrad & 0x80) != 0;
    }
}
