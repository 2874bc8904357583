using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The bracket every facade's <c>forward</c> puts around the wrapped model's <c>call</c>: the outermost facade
    /// call on the thread starts a new pass for call indices and runs the concerns' outer-call steps
    /// (<see cref="CallPath.OuterCallBegins"/> / <see cref="CallPath.OuterCallEnds"/>); if the call throws, it finishes the failed module
    /// calls above it (always_call hooks, precision regions) before the exception propagates; if it returns,
    /// it finishes the calls that threw inside it and were caught by user code without a hooked call after them.
    /// </summary>
    internal readonly struct FacadeCall
    {
        private readonly CallStack _stack;
        private readonly int _mark;
        private readonly int _outerSteps;

        private FacadeCall(CallStack stack, int mark, int outerSteps) { _stack = stack; _mark = mark; _outerSteps = outerSteps; }

        /// <summary>Begins a facade call of <paramref name="root"/> (the wrapped model) on this thread's <paramref name="stack"/>.</summary>
        public static FacadeCall Begin(CallStack stack, torch.nn.Module root)
        {
            int outer = 0;
            if (stack.FacadeDepth++ == 0)
            {
                stack.Pass++;
                stack.LastReplacement = default;
                try { outer = CallPath.OuterCallBegins(root); }
                catch
                {
                    stack.FacadeDepth--;
                    throw;
                }
            }
            return new FacadeCall(stack, stack.Count, outer);
        }

        /// <summary>
        /// Ends the bracket. Calls still open above it are finished as failed: the ones that threw inside the facade
        /// call, when it threw <paramref name="failure"/> (their exceptions from always_call hooks attached to it), or
        /// the ones that threw and were caught by user code, when it returned. Returns null when the original
        /// exception is to propagate unchanged (always, except below), or an explaining exception when libtorch
        /// rejected a value a hook had put in place during this call (which hook, which module, what value; the
        /// libtorch error as its inner exception), or an <see cref="ObjectDisposedException"/> naming
        /// <paramref name="model"/> when it was disposed.
        /// </summary>
        public Exception? End(Exception? failure, torch.nn.Module? model = null)
        {
            Exception? explained = null;
            try
            {
                if (_stack.Count > _mark)
                {
                    var suppressed = new List<Exception>();
                    _stack.Unwind(_mark, suppressed);
                    FailureReport.Warn(suppressed, failure);
                }
                if (failure is not null && model is not null && failure is not ObjectDisposedException && ModuleState.IsDisposed(model))
                    explained = ModuleState.Disposed(model, "The facade's model cannot be called", failure);
                else if (failure is ExternalException && _stack.LastReplacement.Node is not null)
                    explained = Explain(failure, _stack.LastReplacement);
            }
            finally
            {
                if (--_stack.FacadeDepth == 0 && _stack.Count == 0) _stack.EndPass();
                CallPath.OuterCallEnds(_outerSteps);
            }
            return explained;
        }

        private static InvalidOperationException Explain(Exception error, Replacement r)
        {
            var node = r.Node!;
            return new InvalidOperationException(
                $"libtorch rejected a value after a hook replaced one: the {r.Hook} of module '{node.Path}' ({node.Module.GetType().Name}) " +
                $"returned {Describe(r.Value)} as the module's {r.What}, and the model then failed with: {Sentence(FirstLine(error.Message))} " +
                "Check that the hook's replacement has the shape, dtype and device the next layer expects.", error);
        }

        /// <summary>A quoted message ended as a sentence (libtorch's end without a period), so the next sentence doesn't run on.</summary>
        private static string Sentence(string text) => text.Length == 0 || ".!?".IndexOf(text[^1]) >= 0 ? text : text + ".";

        /// <summary>libtorch's message without the C++ backtrace that follows it (still in the inner exception).</summary>
        private static string FirstLine(string message)
        {
            int end = message.IndexOf('\n');
            return (end < 0 ? message : message.Substring(0, end)).TrimEnd();
        }

        internal static string Describe(object? value) => value switch
        {
            null => "null",
            torch.Tensor { IsInvalid: true } => "a disposed tensor",
            torch.Tensor t => $"a {t.dtype} tensor of shape [{string.Join(", ", t.shape)}]",
            _ => $"a {Dispatchers.Name(value.GetType())}",
        };
    }

    /// <summary>
    /// How a facade's <c>forward</c> knows it was reached through TorchSharp's <c>call</c> (run the whole call path)
    /// rather than called directly (skip the root's own hooks, like PyTorch's <c>model.forward</c>): the facade's
    /// first TorchSharp module pre-hook marks it on the thread, <c>forward</c> takes the mark.
    /// </summary>
    internal static class FacadeEntry
    {
        public const string Key = "TorchHooks.FacadeEntry";

        /// <summary>The facade's TorchSharp pre-hook: its <c>forward</c> is being reached through <c>call</c> on this thread.</summary>
        public static void Mark(torch.nn.Module facade) => CallStack.Current.EnteredFacade = facade;

        /// <summary>Whether <paramref name="facade"/>'s <c>forward</c> was reached through <c>call</c> (takes the mark).</summary>
        public static bool Take(CallStack stack, torch.nn.Module facade)
        {
            if (!ReferenceEquals(stack.EnteredFacade, facade)) return false;
            stack.EnteredFacade = null;
            return true;
        }
    }
}
