using System;

namespace TorchHooks
{
    /// <summary>
    /// An entered autocast region, as a value: returned by <see cref="Amp.Enter"/> and
    /// <see cref="AutocastState.Apply"/>; <see cref="Dispose"/> exits the region and restores the state from
    /// before it. Allocation-free (meant for per-call use, e.g. a per-module precision policy).
    /// </summary>
    /// <remarks>
    /// Exit on the thread that entered, in reverse order of entry — <c>using var t = Amp.Enter(...);</c> or
    /// <c>try/finally</c>. Disposing twice (or disposing a copy) is a no-op. Disposing on another thread throws
    /// <see cref="InvalidOperationException"/>; disposing out of order closes the regions entered after this one
    /// too and then throws <see cref="InvalidOperationException"/>. The default value is an empty token whose
    /// <see cref="Dispose"/> does nothing.
    /// </remarks>
    public readonly struct AutocastToken : IDisposable
    {
        internal readonly long Id;
        internal readonly int Index;
        internal readonly int ThreadId;

        internal AutocastToken(long id, int index, int threadId)
        {
            Id = id; Index = index; ThreadId = threadId;
        }

        /// <summary>Whether the region is still open (false for the default token, after exit, or on another thread).</summary>
        public bool IsOpen => AutocastStack.IsOpen(this);

        /// <summary>Exits the region: decrements libtorch's nesting counter (clearing the cast cache when it reaches 0)
        /// and restores the enabled flag, dtype and cache flag saved on entry.</summary>
        public void Dispose() => AutocastStack.Exit(this);
    }
}
