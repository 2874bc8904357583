using System;
using System.Threading;
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
        private AutocastToken _token;
        private readonly bool? _requestedCache;
        private readonly torch.ScalarType? _requestedDtype;
        private int _suspendedOn;     // managed thread id whose region was closed when that thread left the scope's async flow
        private bool _disposed;
        internal AutocastScope? Parent;

        internal AutocastScope(DeviceType device_type, torch.ScalarType dtype, bool enabled, bool cache_enabled, AutocastToken token,
            torch.ScalarType? requestedDtype, bool? requestedCache)
        {
            this.device_type = device_type;
            this.dtype = dtype;
            this.enabled = enabled;
            this.cache_enabled = cache_enabled;
            _token = token;
            _requestedDtype = requestedDtype;
            _requestedCache = requestedCache;
            AutocastFlow.Entered(this);
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
        /// or while regions entered after this one are still open (those are closed, then this throws), or after an
        /// <c>await</c> inside the scope resumed on another thread (the region was closed when its thread left the
        /// async method; the code after the <c>await</c> ran without it).</exception>
        public void Dispose()
        {
            if (_disposed) return;
            if (_suspendedOn != 0 && _suspendedOn != Environment.CurrentManagedThreadId)
            {
                _disposed = true;
                AutocastFlow.Exited(this);
                throw new InvalidOperationException(
                    $"An 'await' inside this autocast scope ({this}) resumed on another thread (managed thread {Environment.CurrentManagedThreadId}; " +
                    $"the scope was entered on thread {_suspendedOn}). libtorch's autocast state is per thread: TorchHooks closed the region " +
                    "when its thread left the async method, so that thread is not left under autocast, and the code after the 'await' ran " +
                    "without autocast. Keep 'await' outside autocast scopes, or carry the state into the awaited work with " +
                    "AutocastState.Capture() and Run()/Wrap().");
            }
            _token.Dispose();
            _disposed = true;
            AutocastFlow.Exited(this);
        }

        /// <summary>This scope's thread is leaving the async flow that entered it: close its region on this thread.</summary>
        internal void Suspend()
        {
            if (_disposed || !_token.IsOpen) return;
            try { _token.Dispose(); }
            catch (InvalidOperationException) { /* regions entered after it (and left open) were closed with it */ }
            _suspendedOn = Environment.CurrentManagedThreadId;
        }

        /// <summary>The flow came back to the thread that entered the scope (e.g. a continuation on the same thread): reopen it.</summary>
        internal void Resume()
        {
            if (_disposed || _suspendedOn != Environment.CurrentManagedThreadId) return;
            var bit = AutocastStack.CheckDevice(device_type, nameof(device_type));
            _token = AutocastStack.Enter(bit, device_type, _requestedDtype, enabled, _requestedCache);
            _suspendedOn = 0;
        }

        /// <inheritdoc />
        public override string ToString() =>
            $"autocast(device_type={device_type}, dtype={dtype}, enabled={enabled}, cache_enabled={cache_enabled})";
    }

    /// <summary>
    /// Follows <see cref="Amp.autocast"/> scopes through async flows (an <see cref="AsyncLocal{T}"/> with a change
    /// callback): when a thread leaves the flow that entered a scope still open on it — an <c>await</c> inside the
    /// scope returned to the caller, a pool thread finished the work item — the scope's region is closed on that
    /// thread, so nothing that runs there next inherits it; when the flow comes back to that same thread the region
    /// reopens. A continuation on another thread is not put under autocast; the scope's Dispose there says so.
    /// </summary>
    internal static class AutocastFlow
    {
        private static readonly AsyncLocal<AutocastScope?> s_current = new(OnChanged);

        public static void Entered(AutocastScope scope)
        {
            scope.Parent = s_current.Value;
            s_current.Value = scope;
        }

        public static void Exited(AutocastScope scope)
        {
            if (ReferenceEquals(s_current.Value, scope)) s_current.Value = scope.Parent;
        }

        private static void OnChanged(AsyncLocalValueChangedArgs<AutocastScope?> e)
        {
            if (!e.ThreadContextChanged) return;
            try
            {
                // Leaving: innermost first.
                for (var s = e.PreviousValue; s is not null; s = s.Parent)
                    if (!Contains(e.CurrentValue, s)) s.Suspend();
                // Coming back: outermost first.
                if (e.CurrentValue is { } current) ResumeChain(current, e.PreviousValue);
            }
            catch (Exception ex)
            {
                // An exception here would end the process (it runs inside the runtime's context switch).
                System.Diagnostics.Trace.TraceWarning($"TorchHooks: restoring autocast state on a context switch failed: {ex.GetType().Name}: {ex.Message}");
            }
        }

        private static void ResumeChain(AutocastScope scope, AutocastScope? previous)
        {
            if (scope.Parent is { } parent) ResumeChain(parent, previous);
            if (!Contains(previous, scope)) scope.Resume();
        }

        private static bool Contains(AutocastScope? chain, AutocastScope scope)
        {
            for (var s = chain; s is not null; s = s.Parent)
                if (ReferenceEquals(s, scope)) return true;
            return false;
        }
    }
}
