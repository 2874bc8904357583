using System;
using System.Collections.Generic;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The bracket every facade's <c>forward</c> puts around the wrapped model's <c>call</c>: it starts a
    /// new pass for call indices (outermost facade only) and, if the call throws, finishes the failed
    /// module calls above it (always_call hooks, forward scopes) before the exception propagates unchanged.
    /// </summary>
    internal readonly struct FacadeCall
    {
        private readonly CallStack _stack;
        private readonly int _mark;
        private readonly bool _castGate;

        private FacadeCall(CallStack stack, int mark, bool castGate) { _stack = stack; _mark = mark; _castGate = castGate; }

        /// <summary>Begins a facade call of <paramref name="root"/> (the wrapped model; its weight casts may be kept, <see cref="CastCache"/>).</summary>
        public static FacadeCall Begin(torch.nn.Module root)
        {
            var stack = CallStack.Current;
            bool gate = false;
            if (stack.FacadeDepth++ == 0)
            {
                stack.Pass++;
                if (AutocastStack.Depth != 0) gate = CastCache.FacadeBegin(root);
            }
            return new FacadeCall(stack, stack.Count, gate);
        }

        public void Fail(Exception exception)
        {
            if (_stack.Count <= _mark) return;
            var suppressed = new List<Exception>();
            _stack.Unwind(_mark, suppressed);
            FailureReport.Warn(suppressed, exception);
        }

        public void End()
        {
            _stack.FacadeDepth--;
            if (_castGate) CastCache.FacadeEnd();
        }
    }
}
