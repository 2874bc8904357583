using System;
using System.Collections.Generic;

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

        private FacadeCall(CallStack stack, int mark) { _stack = stack; _mark = mark; }

        public static FacadeCall Begin()
        {
            var stack = CallStack.Current;
            if (stack.FacadeDepth++ == 0) stack.Pass++;
            if (stack.FacadeDepth == 1) TracingConcern.CheckListeners();   // an OpenTelemetry listener added or removed since the last call
            return new FacadeCall(stack, stack.Count);
        }

        public void Fail(Exception exception)
        {
            if (_stack.Count <= _mark) return;
            var suppressed = new List<Exception>();
            _stack.Unwind(_mark, suppressed);
            FailureReport.Warn(suppressed, exception);
        }

        public void End() => _stack.FacadeDepth--;
    }
}
