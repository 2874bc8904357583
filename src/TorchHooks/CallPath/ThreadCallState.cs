using System;
using System.Collections.Generic;

namespace TorchHooks
{
    /// <summary>
    /// What TorchHooks keeps per thread — the module calls under way (<see cref="ModuleCallInfo"/>, always_call
    /// bookkeeping, precision regions) and the autocast regions entered through <see cref="Amp"/> — and a way to
    /// put a thread back to a clean state. See docs/reliability.md.
    /// </summary>
    public static class ThreadCallState
    {
        /// <summary>
        /// The deepest nesting of hooked module calls on one thread (a hook that calls the model again, a module
        /// that calls itself): the call one level deeper throws <see cref="InvalidOperationException"/> naming the
        /// module, instead of overflowing the stack (which would end the process). A thread whose stack runs
        /// out earlier gets <see cref="InsufficientExecutionStackException"/> instead.
        /// </summary>
        public const int MaxCallDepth = 1000;

        /// <summary>
        /// Puts the calling thread back to a clean state, e.g. on a pool thread before reuse, or after a direct
        /// (unwrapped) model call that threw: finishes every module call still open on the thread as failed
        /// (their always_call forward hooks run, their precision regions close; exceptions from those hooks are
        /// reported as trace warnings), then closes every autocast region entered through TorchHooks on the
        /// thread and switches libtorch's autocast off for CPU and CUDA. Call it outside any model call.
        /// </summary>
        /// <returns>How many unfinished module calls were finished.</returns>
        public static int Reset()
        {
            int finished = 0;
            var stack = CallStack.CurrentOrNull;
            if (stack is not null && stack.Count > 0)
            {
                finished = stack.Count;
                var suppressed = new List<Exception>();
                stack.Unwind(0, suppressed);
                FailureReport.Warn(suppressed, null);
            }
            AutocastStack.ResetThread();
            return finished;
        }
    }
}
