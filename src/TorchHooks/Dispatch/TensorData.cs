using System;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// libtorch's <c>at::TensorBase::set_data</c> — PyTorch's <c>param.data = new_data</c>, which <c>nn.Module._apply</c>
    /// uses to move parameters between devices: the tensor's own <c>TensorImpl</c> takes the new data's storage, device and
    /// metadata, so every holder of it (the managed <c>Parameter</c>, a module implemented in libtorch that holds the same
    /// tensor, an autograd graph) sees the move. TorchSharp 0.107 has no binding for it.
    /// </summary>
    /// <remarks>
    /// libtorch throws (a C++ exception, which must never cross into .NET) unless both tensors are dense tensors of the
    /// CPU or CUDA backend (<c>_has_compatible_shallow_copy_type</c>) and, if the tensor requires grad, the new data is
    /// floating point or complex: <see cref="Applies"/> checks exactly that first; <c>meta</c> is not dense.
    /// </remarks>
    internal static unsafe class TensorData
    {
        internal static readonly NativeSymbol SetDataSymbol = NativeSymbol.Cpp(NativeLibraryId.TorchCpu,
            "void at::TensorBase::set_data(const at::TensorBase& new_data) const",
            "_ZNK2at10TensorBase8set_dataERKS0_",
            "?set_data@TensorBase@at@@QEBAXAEBV12@@Z");

        private static delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void> s_setData;
        private static readonly object s_lock = new();

        /// <summary>Whether libtorch accepts <c>set_data</c> from <paramref name="data"/> into <paramref name="tensor"/> (checked before calling).</summary>
        public static bool Applies(Tensor tensor, Tensor data)
            => Dense(tensor) && Dense(data) && !tensor.is_sparse && !data.is_sparse
               && (!tensor.requires_grad || data.is_floating_point() || data.is_complex());

        private static bool Dense(Tensor t) => t.device_type is DeviceType.CPU or DeviceType.CUDA;

        /// <summary><paramref name="tensor"/> takes <paramref name="data"/>'s storage and device in place (same object, same native tensor).</summary>
        /// <exception cref="ArgumentException">libtorch would refuse the pair (see <see cref="Applies"/>).</exception>
        public static void Set(Tensor tensor, Tensor data)
        {
            if (!Applies(tensor, data))
                throw new ArgumentException($"set_data cannot move a {tensor.device_type} tensor to {data.device_type} data in place (both must be dense CPU or CUDA tensors).");
            var fn = s_setData;
            if (fn == null)
            {
                lock (s_lock)
                {
                    if (s_setData == null)
                    {
                        AutocastNative.EnsureBound();   // loads the libtorch_cpu TorchSharp uses
                        s_setData = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void>)AutocastNative.Resolve(AutocastNative.TorchCpuHandle, SetDataSymbol, OperatingSystem.IsWindows());
                    }
                    fn = s_setData;
                }
            }
            fn(tensor.Handle, data.Handle);
            GC.KeepAlive(tensor);
            GC.KeepAlive(data);
        }
    }
}
