using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// An autocast region, returned by <see cref="Amp.autocast"/> (PyTorch's <c>torch.autocast</c> object used
    /// in a <c>with</c> block). Ops on this thread run under libtorch's autocast until <see cref="Dispose"/>.
    /// </summary>
    /// <example>
    /// <code>
    /// using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
    /// {
    ///     using var y = model.call(x);   // linear/matmul/conv run in bfloat16
    ///     loss = mse_loss(y, target);    // losses run in float32
    /// }
    /// loss.backward();                   // backward outside the region, like PyTorch
    /// </code>
    /// </example>
    /// <remarks>
    /// The region belongs to the thread that entered it (libtorch's autocast state is thread-local). Dispose it on
    /// that thread, in reverse order of entry; see <see cref="AutocastToken"/> for what happens otherwise. There is
    /// no finalizer: a scope that is never disposed leaves its thread under autocast.
    /// </remarks>
    public sealed class AutocastScope : IDisposable
    {
        private readonly AutocastToken _token;

        internal AutocastScope(DeviceType device_type, torch.ScalarType dtype, bool enabled, bool cache_enabled, AutocastToken token)
        {
            this.device_type = device_type;
            this.dtype = dtype;
            this.enabled = enabled;
            this.cache_enabled = cache_enabled;
            _token = token;
        }

        /// <summary>The device type whose autocast state this region sets.</summary>
        public DeviceType device_type { get; }

        /// <summary>The lower-precision dtype ops run in (PyTorch's <c>fast_dtype</c>).</summary>
        public torch.ScalarType dtype { get; }

        /// <summary>Whether autocast is enabled inside the region (false for a full-precision sub-region).</summary>
        public bool enabled { get; }

        /// <summary>Whether the cast cache (weights cast once per outermost region) is enabled inside the region.</summary>
        public bool cache_enabled { get; }

        /// <summary>Whether the region is still open on the calling thread.</summary>
        public bool IsOpen => _token.IsOpen;

        /// <summary>Exits the region and restores the state from before it. Idempotent.</summary>
        /// <exception cref="InvalidOperationException">Called on another thread than the one that entered the region,
        /// or while regions entered after this one are still open (those are closed, then this throws).</exception>
        public void Dispose() => _token.Dispose();

        /// <inheritdoc />
        public override string ToString() =>
            $"autocast(device_type={device_type}, dtype={dtype}, enabled={enabled}, cache_enabled={cache_enabled})";
    }
}
