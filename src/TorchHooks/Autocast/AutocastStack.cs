using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>What one entered autocast region saved, to restore on exit.</summary>
    internal struct AutocastFrame
    {
        public long Id;
        public byte Devices; // AutocastStack.CpuBit | AutocastStack.CudaBit
        public bool PrevCpuEnabled;
        public torch.ScalarType PrevCpuDtype;
        public bool PrevCudaEnabled;
        public torch.ScalarType PrevCudaDtype;
        public bool PrevCacheEnabled;
        /// <summary>Opened by a module call on the call path (a precision policy), not by user code.</summary>
        public bool CallRegion;
    }

    /// <summary>
    /// The per-thread stack of autocast regions entered through TorchHooks. libtorch keeps the autocast state
    /// itself (thread-local); this stack keeps what each region must restore and detects exits on the wrong
    /// thread or out of order. Frames are value types in a reused array: entering allocates nothing after the
    /// first use on a thread.
    /// </summary>
    internal static class AutocastStack
    {
        internal const byte CpuBit = 1;
        internal const byte CudaBit = 2;

        [ThreadStatic] private static AutocastFrame[]? t_frames;
        [ThreadStatic] private static int t_count;
        [ThreadStatic] private static long t_lastId;

        /// <summary>How many TorchHooks autocast regions are open on this thread.</summary>
        internal static int Depth => t_count;

        internal static byte CheckDevice(DeviceType device_type, string paramName)
        {
            switch (device_type)
            {
                case DeviceType.CPU: return CpuBit;
                case DeviceType.CUDA: return CudaBit;
                default:
                    throw new ArgumentException(
                        $"Autocast supports device_type DeviceType.CPU and DeviceType.CUDA, not DeviceType.{device_type}.",
                        paramName);
            }
        }

        /// <summary>
        /// Validates the dtype of a region: an enabled region needs a lower-precision type autocast supports on the
        /// device (libtorch 2.10: BFloat16 or Float16 on CPU and CUDA). A disabled region accepts any dtype, like
        /// PyTorch; an unsupported one is dropped (returns null: the device's autocast dtype stays as it is).
        /// </summary>
        internal static torch.ScalarType? CheckDtype(DeviceType device_type, torch.ScalarType? dtype, bool enabled, string paramName)
        {
            if (dtype is not { } d || d == torch.ScalarType.BFloat16 || d == torch.ScalarType.Float16) return dtype;
            if (!enabled) return null;
            var dflt = device_type == DeviceType.CUDA ? "Float16" : "BFloat16";
            throw new ArgumentException(
                $"Autocast dtype ScalarType.{d} is not supported on DeviceType.{device_type}. " +
                $"Allowed: ScalarType.BFloat16, ScalarType.Float16 (default ScalarType.{dflt}). " +
                "To run a region in full precision use enabled: false.",
                paramName);
        }

        /// <summary>
        /// Enters a region for one device: saves, sets, increments libtorch's nesting counter. The caller has
        /// validated the device type and dtype (<see cref="CheckDevice"/>, <see cref="CheckDtype"/>).
        /// </summary>
        internal static AutocastToken Enter(byte bit, DeviceType device_type, torch.ScalarType? dtype, bool enabled, bool? cache_enabled, bool callRegion = false)
        {
            AutocastNative.EnsureBound();

            var frame = default(AutocastFrame);
            frame.Devices = bit;
            frame.CallRegion = callRegion;
            frame.PrevCacheEnabled = LogicalCacheEnabled;
            var prevEnabled = AutocastNative.IsAutocastEnabled(device_type);
            var prevDtype = AutocastNative.GetAutocastDtype(device_type);
            if (bit == CpuBit) { frame.PrevCpuEnabled = prevEnabled; frame.PrevCpuDtype = prevDtype; }
            else { frame.PrevCudaEnabled = prevEnabled; frame.PrevCudaDtype = prevDtype; }

            bool outermost = t_count == 0;
            var newDtype = dtype ?? prevDtype;
            if (outermost) CastCache.BeforeOutermost(device_type, newDtype, enabled);
            AutocastNative.SetAutocastEnabled(device_type, enabled);
            AutocastNative.SetAutocastDtype(device_type, newDtype);
            AutocastNative.IncrementNesting();
            bool logical = cache_enabled ?? frame.PrevCacheEnabled;
            SetCache(logical, outermost ? CastCache.BeginOutermost(logical, device_type, newDtype, enabled) : CastCache.Physical(logical));
            return Push(ref frame);
        }

        /// <summary>Enters a region that sets the state of both devices and the cache flag at once.</summary>
        internal static AutocastToken EnterState(AutocastState state)
        {
            AutocastNative.EnsureBound();
            var frame = default(AutocastFrame);
            frame.Devices = CpuBit | CudaBit;
            frame.PrevCacheEnabled = LogicalCacheEnabled;
            frame.PrevCpuEnabled = AutocastNative.IsAutocastEnabled(DeviceType.CPU);
            frame.PrevCpuDtype = AutocastNative.GetAutocastDtype(DeviceType.CPU);
            frame.PrevCudaEnabled = AutocastNative.IsAutocastEnabled(DeviceType.CUDA);
            frame.PrevCudaDtype = AutocastNative.GetAutocastDtype(DeviceType.CUDA);

            bool outermost = t_count == 0;
            if (outermost) CastCache.BeforeOutermost(DeviceType.CPU, state.CpuDtype, state.CpuEnabled);
            AutocastNative.SetAutocastEnabled(DeviceType.CPU, state.CpuEnabled);
            AutocastNative.SetAutocastDtype(DeviceType.CPU, state.CpuDtype);
            AutocastNative.SetAutocastEnabled(DeviceType.CUDA, state.CudaEnabled);
            AutocastNative.SetAutocastDtype(DeviceType.CUDA, state.CudaDtype);
            AutocastNative.IncrementNesting();
            SetCache(state.CacheEnabled, outermost
                ? CastCache.BeginOutermost(state.CacheEnabled, DeviceType.CPU, state.CpuDtype, state.CpuEnabled)
                : CastCache.Physical(state.CacheEnabled));
            return Push(ref frame);
        }

        private static AutocastToken Push(ref AutocastFrame frame)
        {
            var frames = t_frames ??= new AutocastFrame[8];
            if (t_count == frames.Length)
            {
                Array.Resize(ref frames, frames.Length * 2);
                t_frames = frames;
            }
            frame.Id = ++t_lastId;
            int index = t_count;
            frames[index] = frame;
            t_count = index + 1;
            return new AutocastToken(frame.Id, index, Environment.CurrentManagedThreadId);
        }

        /// <summary>Whether the region of <paramref name="token"/> is still open on this thread.</summary>
        internal static bool IsOpen(in AutocastToken token)
        {
            if (token.Id == 0 || token.ThreadId != Environment.CurrentManagedThreadId) return false;
            var frames = t_frames;
            return frames != null && token.Index < t_count && frames[token.Index].Id == token.Id;
        }

        /// <summary>
        /// Exits the region of <paramref name="token"/>. A second exit is a no-op. Exiting on another thread throws
        /// without touching any state. Exiting a region while regions entered after it are still open closes those
        /// first (innermost first, so the state before this region is restored exactly) and then throws.
        /// </summary>
        internal static void Exit(in AutocastToken token)
        {
            if (token.Id == 0) return;
            if (token.ThreadId != Environment.CurrentManagedThreadId)
                throw new InvalidOperationException(
                    $"An autocast scope entered on managed thread {token.ThreadId} is being exited on thread " +
                    $"{Environment.CurrentManagedThreadId}. libtorch's autocast state is thread-local, so the scope can " +
                    "only be exited on the thread that entered it; its thread still runs under it. Do not 'await' inside " +
                    "an autocast scope (the continuation may resume on another thread); open the scope around synchronous " +
                    "code, or carry the state with AutocastState.Capture() and Apply()/Run() on the worker thread.");
            var frames = t_frames;
            int count = t_count;
            if (frames == null || token.Index >= count || frames[token.Index].Id != token.Id) return; // already exited
            if (token.Index == count - 1)
            {
                RestoreTop();
                return;
            }
            if (OnlyCallRegionsAbove(token.Index))
            {
                // Regions opened after this scope by module calls (precision policies) that threw inside it: the exception is
                // unwinding through this scope's 'using'. Finish those calls (their always_call hooks run, their regions
                // close in order), then exit normally, so the call's own exception propagates.
                CallStack.FinishCallsWithRegionsAbove(token.Index);
                frames = t_frames;
                count = t_count;
                if (frames != null && token.Index == count - 1 && frames[token.Index].Id == token.Id)
                {
                    RestoreTop();
                    return;
                }
                if (frames == null || token.Index >= count || frames[token.Index].Id != token.Id) return;
            }
            int inner = count - 1 - token.Index;
            while (t_count > token.Index) RestoreTop();
            throw new InvalidOperationException(
                $"Autocast scopes exited out of order: this scope was exited while {inner} scope(s) entered after it " +
                "were still open. TorchHooks closed those as well and restored the autocast state from before this " +
                "scope; their own Dispose is now a no-op. Exit scopes in reverse order of entry (use 'using').");
        }

        private static bool OnlyCallRegionsAbove(int index)
        {
            var frames = t_frames!;
            for (int i = index + 1; i < t_count; i++)
                if (!frames[i].CallRegion) return false;
            return true;
        }

        /// <summary>
        /// Closes every TorchHooks region open on this thread (innermost first), then brings libtorch's nesting
        /// counter back to 0 (clearing the cache) in case something else left it raised.
        /// </summary>
        internal static void ResetThread()
        {
            AutocastNative.EnsureBound();
            while (t_count > 0) RestoreTop();
            CastCache.ResetThread();
            while (AutocastNative.CurrentNesting() > 0)
                if (AutocastNative.DecrementNesting() == 0) CastCache.Clear();
            AutocastNative.SetAutocastEnabled(DeviceType.CPU, false);
            AutocastNative.SetAutocastEnabled(DeviceType.CUDA, false);
        }

        private static void RestoreTop()
        {
            var frames = t_frames!;
            int i = t_count - 1;
            var f = frames[i];
            frames[i] = default;
            t_count = i;
            if (AutocastNative.DecrementNesting() == 0) CastCache.EndOutermost();
            if ((f.Devices & CpuBit) != 0)
            {
                AutocastNative.SetAutocastEnabled(DeviceType.CPU, f.PrevCpuEnabled);
                AutocastNative.SetAutocastDtype(DeviceType.CPU, f.PrevCpuDtype);
            }
            if ((f.Devices & CudaBit) != 0)
            {
                AutocastNative.SetAutocastEnabled(DeviceType.CUDA, f.PrevCudaEnabled);
                AutocastNative.SetAutocastDtype(DeviceType.CUDA, f.PrevCudaDtype);
            }
            SetCache(f.PrevCacheEnabled, i == 0 ? f.PrevCacheEnabled : CastCache.Physical(f.PrevCacheEnabled));
        }

        [ThreadStatic] private static bool t_logicalCache;

        /// <summary>
        /// Whether the cast cache is enabled on this thread as the regions say (what <c>is_autocast_cache_enabled</c>
        /// reports). libtorch's own flag can differ between facade calls of a region that keeps weight casts
        /// (<see cref="CastCache"/>).
        /// </summary>
        internal static bool LogicalCacheEnabled => t_count > 0 ? t_logicalCache : AutocastNative.IsAutocastCacheEnabled();

        private static void SetCache(bool logical, bool physical)
        {
            t_logicalCache = logical;
            AutocastNative.SetAutocastCacheEnabled(physical);
        }
    }
}
