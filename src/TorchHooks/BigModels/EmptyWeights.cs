using System;
using System.Threading;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Build a model without allocating its weights — HuggingFace Accelerate's <c>init_empty_weights()</c>
    /// (<c>big_modeling.py</c>, with <c>include_buffers=True</c>): TorchSharp module constructors called inside
    /// <see cref="Scope"/> put their parameters and buffers on libtorch's <c>meta</c> device, which has shapes and
    /// dtypes but no storage. A 7-billion-parameter shape costs a few megabytes; its <c>Summary</c> works (meta
    /// tensors run forward as shape computations); then load real weights with
    /// <see cref="StateDictLoading.load_state_dict(IHookedModule, Checkpoint, bool)"/>.
    /// </summary>
    /// <remarks>
    /// <para>How: the scope sets TorchSharp's default device (<c>torch.set_default_device(torch.META)</c>), which
    /// every TorchSharp factory and module constructor reads, and restores the previous default device when
    /// disposed (in a <c>finally</c>, so also when a constructor throws).</para>
    /// <para>Differences from Accelerate: TorchSharp's default device is <b>process-wide</b>, not per thread, and it
    /// applies to every tensor created inside the scope, not only to registered parameters (Accelerate patches
    /// <c>register_parameter</c>); so buffers are always included, and other threads creating tensors meanwhile get
    /// <c>meta</c> tensors too. Keep the scope around constructors only. Scopes nest; a scope must be disposed on
    /// the thread that opened it, innermost first.</para>
    /// </remarks>
    public static class EmptyWeights
    {
        private static readonly object s_gate = new();
        private static int s_depth;

        /// <summary>Whether an empty-weights scope is open (in any thread: TorchSharp's default device is process-wide).</summary>
        public static bool IsActive => Volatile.Read(ref s_depth) > 0;

        /// <summary>
        /// Opens the scope: until it is disposed, modules and tensors are created on <c>meta</c>.
        /// <code>using (EmptyWeights.Scope()) model = new MyModel();</code>
        /// </summary>
        public static IDisposable Scope()
        {
            lock (s_gate)
            {
                var previous = torch.get_default_device();
                torch.set_default_device(torch.META);
                s_depth++;
                return new Restore(previous, Environment.CurrentManagedThreadId);
            }
        }

        private sealed class Restore : IDisposable
        {
            private readonly torch.Device _previous;
            private readonly int _thread;
            private int _disposed;

            public Restore(torch.Device previous, int thread) { _previous = previous; _thread = thread; }

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
                lock (s_gate)
                {
                    try
                    {
                        if (Environment.CurrentManagedThreadId != _thread)
                            throw new InvalidOperationException("An EmptyWeights.Scope() was disposed on another thread than the one that opened it; " +
                                                                "dispose it where it was opened (a using block). The default device was restored anyway.");
                    }
                    finally
                    {
                        torch.set_default_device(_previous);
                        s_depth--;
                    }
                }
            }
        }
    }
}
