using System;

namespace TorchHooks
{
    /// <summary>
    /// Thrown by the next forward of a module with backward hooks when a backward hook threw during an earlier plain
    /// <c>loss.backward()</c> (use <see cref="BackwardHooks.Backward"/> to get the exception right there).
    /// <see cref="Exception.InnerException"/> is the hook's original exception.
    /// </summary>
    public sealed class BackwardHookException : Exception
    {
        internal BackwardHookException(Exception inner)
            : base($"A backward hook threw during an earlier backward pass ({inner.GetType().Name}: {inner.Message}); the hooks were skipped from then on, and the gradients of that pass are not what the hooks would have made. " +
                   "Call loss.Backward() (TorchHooks) instead of loss.backward() to get the exception from the backward call itself.", inner) { }
    }
}
