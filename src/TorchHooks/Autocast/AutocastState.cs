using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// An immutable snapshot of a thread's autocast state (enabled flag and dtype for CPU and CUDA, and the cache
    /// flag), to carry it to another thread.
    /// </summary>
    /// <remarks>
    /// <para>
    /// libtorch keeps the autocast state per OS thread, like grad mode. Work started with <c>Task.Run</c>,
    /// <c>Parallel.For</c> or a new <c>Thread</c> does <b>not</b> run under the caller's autocast, and after an
    /// <c>await</c> the continuation may resume on another thread-pool thread whose state is unrelated. Capture the
    /// state where it is set and apply it where the work runs:
    /// </para>
    /// <code>
    /// var amp = AutocastState.Capture();                       // on the thread inside Amp.autocast(...)
    /// var y = await Task.Run(() => amp.Run(() => model.call(x)));
    /// // or: await Task.Run(AutocastState.Wrap(() => model.call(x)));
    /// </code>
    /// <para>Grad mode (<c>torch.no_grad()</c>) is thread-local in TorchSharp as well and is not part of this snapshot.</para>
    /// </remarks>
    public sealed class AutocastState : IEquatable<AutocastState>
    {
        private AutocastState(bool cpuEnabled, torch.ScalarType cpuDtype, bool cudaEnabled, torch.ScalarType cudaDtype, bool cacheEnabled)
        {
            CpuEnabled = cpuEnabled; CpuDtype = cpuDtype;
            CudaEnabled = cudaEnabled; CudaDtype = cudaDtype;
            CacheEnabled = cacheEnabled;
        }

        /// <summary>Whether CPU autocast was enabled.</summary>
        public bool CpuEnabled { get; }
        /// <summary>The CPU autocast dtype.</summary>
        public torch.ScalarType CpuDtype { get; }
        /// <summary>Whether CUDA autocast was enabled.</summary>
        public bool CudaEnabled { get; }
        /// <summary>The CUDA autocast dtype.</summary>
        public torch.ScalarType CudaDtype { get; }
        /// <summary>Whether the cast cache was enabled.</summary>
        public bool CacheEnabled { get; }

        /// <summary>Reads the autocast state of the calling thread.</summary>
        public static AutocastState Capture()
        {
            AutocastNative.EnsureBound();
            return new AutocastState(
                AutocastNative.IsAutocastEnabled(DeviceType.CPU), AutocastNative.GetAutocastDtype(DeviceType.CPU),
                AutocastNative.IsAutocastEnabled(DeviceType.CUDA), AutocastNative.GetAutocastDtype(DeviceType.CUDA),
                AutocastStack.LogicalCacheEnabled);
        }

        /// <summary>
        /// Makes this the autocast state of the calling thread until the returned token is disposed (which restores
        /// the thread's previous state). Counts as one autocast region (nesting and cache behave as for
        /// <see cref="Amp.autocast"/>).
        /// </summary>
        public AutocastToken Apply() => AutocastStack.EnterState(this);

        /// <summary>Runs <paramref name="body"/> on the calling thread under this state, then restores the thread's state.</summary>
        public T Run<T>(Func<T> body)
        {
            if (body is null) throw new ArgumentNullException(nameof(body));
            var token = Apply();
            try { return body(); }
            finally { token.Dispose(); }
        }

        /// <summary>Runs <paramref name="body"/> on the calling thread under this state, then restores the thread's state.</summary>
        public void Run(Action body)
        {
            if (body is null) throw new ArgumentNullException(nameof(body));
            var token = Apply();
            try { body(); }
            finally { token.Dispose(); }
        }

        /// <summary>
        /// Captures the calling thread's state now and returns a delegate that runs <paramref name="body"/> under it
        /// on whichever thread invokes it (e.g. <c>Task.Run(AutocastState.Wrap(() =&gt; model.call(x)))</c>).
        /// </summary>
        public static Func<T> Wrap<T>(Func<T> body)
        {
            if (body is null) throw new ArgumentNullException(nameof(body));
            var state = Capture();
            return () => state.Run(body);
        }

        /// <summary>
        /// Captures the calling thread's state now and returns a delegate that runs <paramref name="body"/> under it
        /// on whichever thread invokes it.
        /// </summary>
        public static Action Wrap(Action body)
        {
            if (body is null) throw new ArgumentNullException(nameof(body));
            var state = Capture();
            return () => state.Run(body);
        }

        /// <inheritdoc />
        public bool Equals(AutocastState? other) =>
            other is not null && CpuEnabled == other.CpuEnabled && CpuDtype == other.CpuDtype &&
            CudaEnabled == other.CudaEnabled && CudaDtype == other.CudaDtype && CacheEnabled == other.CacheEnabled;

        /// <inheritdoc />
        public override bool Equals(object? obj) => Equals(obj as AutocastState);

        /// <inheritdoc />
        public override int GetHashCode() => HashCode.Combine(CpuEnabled, CpuDtype, CudaEnabled, CudaDtype, CacheEnabled);

        /// <inheritdoc />
        public override string ToString() =>
            $"cpu: {(CpuEnabled ? "on" : "off")} {CpuDtype}, cuda: {(CudaEnabled ? "on" : "off")} {CudaDtype}, cache: {(CacheEnabled ? "on" : "off")}";
    }
}
