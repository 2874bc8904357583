using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Automatic mixed precision for TorchSharp, backed by libtorch's own autocast (the <c>torch.amp</c> of
    /// PyTorch): <see cref="autocast"/> scopes and the state queries. See also <see cref="GradScaler"/> and
    /// <see cref="AutocastState"/> (carrying the state to another thread).
    /// </summary>
    /// <remarks>
    /// Under autocast libtorch itself picks the precision per op (its dispatcher's op lists): on CPU, linear,
    /// matmul, mm, bmm, addmm, baddbmm, conv* run in the lower-precision dtype; losses and a list of numerically
    /// sensitive ops run in float32; cat/stack/index_copy promote to the widest input type; everything else runs
    /// in the dtype of its inputs. The state is per device type and per thread.
    /// </remarks>
    public static class Amp
    {
        /// <summary>
        /// Enters an autocast region on the current thread, like PyTorch's
        /// <c>torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)</c>. Dispose the result
        /// (<c>using</c>) to leave it.
        /// </summary>
        /// <param name="device_type">DeviceType.CPU or DeviceType.CUDA.</param>
        /// <param name="dtype">The lower-precision type: BFloat16 or Float16. <c>null</c> takes the device's current
        /// autocast dtype, which is BFloat16 for CPU and Float16 for CUDA unless an enclosing region changed it (as in
        /// PyTorch). With <paramref name="enabled"/> false any dtype is accepted (e.g. Float32, as PyTorch allows); an
        /// unsupported one then leaves the device's autocast dtype unchanged.</param>
        /// <param name="enabled">False makes a full-precision sub-region (autocast off inside).</param>
        /// <param name="cache_enabled">Whether casts of leaf float32 tensors that require grad (weights) are cached
        /// until the outermost region exits. <c>null</c> keeps the current setting (true by default).</param>
        /// <exception cref="ArgumentException">Unsupported <paramref name="device_type"/> or <paramref name="dtype"/>.</exception>
        /// <exception cref="NotSupportedException">The loaded libtorch lacks the autocast functions (TorchHooks expects
        /// libtorch 2.10.0 from TorchSharp 0.107.0).</exception>
        public static AutocastScope autocast(DeviceType device_type, torch.ScalarType? dtype = null, bool enabled = true, bool? cache_enabled = null)
        {
            var bit = AutocastStack.CheckDevice(device_type, nameof(device_type));
            dtype = AutocastStack.CheckDtype(device_type, dtype, enabled, nameof(dtype));
            var token = AutocastStack.Enter(bit, device_type, dtype, enabled, cache_enabled);
            return new AutocastScope(device_type, AutocastNative.GetAutocastDtype(device_type), enabled,
                AutocastStack.LogicalCacheEnabled, token, dtype, cache_enabled);
        }

        /// <summary>
        /// Enters an autocast region and returns an allocation-free token; disposing the token exits it. The same
        /// semantics as <see cref="autocast"/>, meant for code that opens a region per call (e.g. a per-module
        /// precision policy: <c>Enter(DeviceType.CPU, null, enabled: false)</c> forces float32 for one call).
        /// </summary>
        /// <param name="deviceType">DeviceType.CPU or DeviceType.CUDA.</param>
        /// <param name="dtype">BFloat16 or Float16; <c>null</c> keeps the device's current autocast dtype. Any dtype is
        /// accepted when <paramref name="enabled"/> is false (an unsupported one leaves the autocast dtype unchanged).</param>
        /// <param name="enabled">Whether autocast is on inside the region.</param>
        /// <param name="cacheEnabled"><c>null</c> keeps the current cache flag.</param>
        /// <exception cref="ArgumentException">Unsupported device type or dtype.</exception>
        public static AutocastToken Enter(DeviceType deviceType, torch.ScalarType? dtype, bool enabled, bool? cacheEnabled = null)
        {
            var bit = AutocastStack.CheckDevice(deviceType, nameof(deviceType));
            dtype = AutocastStack.CheckDtype(deviceType, dtype, enabled, nameof(dtype));
            return AutocastStack.Enter(bit, deviceType, dtype, enabled, cacheEnabled);
        }

        /// <summary>Whether autocast is enabled for <paramref name="device_type"/> on this thread
        /// (PyTorch: <c>torch.is_autocast_enabled(device_type)</c>).</summary>
        /// <exception cref="ArgumentException">A device type other than CPU or CUDA.</exception>
        public static bool is_autocast_enabled(DeviceType device_type)
        {
            AutocastStack.CheckDevice(device_type, nameof(device_type));
            AutocastNative.EnsureBound();
            return AutocastNative.IsAutocastEnabled(device_type);
        }

        /// <summary>The autocast dtype of <paramref name="device_type"/> on this thread
        /// (PyTorch: <c>torch.get_autocast_dtype(device_type)</c>); BFloat16 for CPU and Float16 for CUDA by default.</summary>
        /// <exception cref="ArgumentException">A device type other than CPU or CUDA.</exception>
        public static torch.ScalarType get_autocast_dtype(DeviceType device_type)
        {
            AutocastStack.CheckDevice(device_type, nameof(device_type));
            AutocastNative.EnsureBound();
            return AutocastNative.GetAutocastDtype(device_type);
        }

        /// <summary>Whether the autocast cast cache is enabled on this thread
        /// (PyTorch: <c>torch.is_autocast_cache_enabled()</c>).</summary>
        public static bool is_autocast_cache_enabled()
        {
            AutocastNative.EnsureBound();
            return AutocastStack.LogicalCacheEnabled;
        }

        /// <summary>
        /// Drops every cached lower-precision copy of a weight (PyTorch: <c>torch.clear_autocast_cache()</c>), including
        /// those TorchHooks keeps across regions for wrapped models (docs/autocast.md, "Weight casts kept across
        /// regions"): call it to free their memory, e.g. after inference when the model stays alive.
        /// </summary>
        public static void clear_autocast_cache()
        {
            AutocastNative.EnsureBound();
            CastCache.Clear();
        }
    }
}
