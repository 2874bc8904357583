using System;
using System.Collections.Generic;
using System.Diagnostics;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The module call path — TorchHooks' counterpart of PyTorch's <c>Module._call_impl</c>, in one place.
    ///
    /// TorchSharp's sealed <c>Module.call</c> runs: its pre-hooks → <c>forward</c> → its post-hooks.
    /// TorchHooks installs exactly one pre-hook (<see cref="BeforeForward"/>) and one post-hook
    /// (<see cref="AfterForward"/>) on every module of a wrapped tree, so every call that goes through
    /// <c>call</c> — from a facade, <c>Sequential</c>, a <c>ModuleList</c> loop or custom forward code —
    /// reaches this file. Reading top to bottom:
    ///
    ///   BeforeForward  1. fast path: no hook anywhere → return at once
    ///                  2. forward pre-hooks, global then local (snapshots; may replace the input)
    ///                  3. precision policy: autocast region opens (Float32 also casts inputs)
    ///   (TorchSharp runs forward)
    ///   AfterForward   4. precision region closes
    ///                  5. forward hooks, global then local (may replace the output)
    ///   FinishFailedCall 6. forward, a pre-hook or a forward hook threw: the always_call forward hooks
    ///                     that have not run yet run (global then local), their own exceptions are
    ///                     collected, not thrown; the original exception propagates unchanged.
    ///
    /// Step 6 runs when the exception reaches the enclosing facade call (<see cref="HookedModule{T,TResult}"/>)
    /// or, if user code inside a parent's forward caught it, when that parent's call finishes. A module
    /// called directly (not through a facade) that threw is finished at its next call.
    /// </summary>
    internal static class CallPath<TArgs, TResult>
    {
        public static TArgs BeforeForward(HookPoint<TArgs, TResult> node, torch.nn.Module module, TArgs args)
        {
            // 1. Fast path: nothing registered for this module and no global hook.
            if (!node.IsActive && !ModuleHooks.IsActive) return args;

            var stack = CallStack.Current;
            // Outside any facade call, an unfinished frame of this same module can only be left over from
            // an earlier direct call that threw (nothing was there to finish it): finish it now.
            if (stack.FacadeDepth == 0 && stack.Count > 0 && stack.Find(node, module) is var stale and >= 0)
                FinishAbandonedCalls(stack, stale);

            // Outside any facade call, the outermost hooked call starts a new pass for call indices.
            if (stack.FacadeDepth == 0 && stack.Count == 0) stack.Pass++;

            var frame = stack.Push();
            frame.Node = node;
            frame.Module = module;
            frame.CallIndex = node.NextCallIndex(stack.Pass);
            // Snapshots: hooks added or removed while this call runs apply from the next call.
            frame.GlobalForward = ModuleHooks.Forward.Snapshot;
            frame.LocalForward = node.Forward.Snapshot;
            frame.Args = args;

            // 2. Forward pre-hooks: global first, then local. A non-null result replaces the input.
            foreach (var entry in ModuleHooks.ForwardPre.Snapshot)
            {
                if (entry.Fn is Func<torch.nn.Module, TArgs, HookResult<TArgs>?> hook && hook(module, args) is { } replaced)
                    args = replaced.Value;
            }
            foreach (var entry in node.ForwardPre.Snapshot)
            {
                if (((Func<torch.nn.Module, TArgs, HookResult<TArgs>?>)entry.Fn)(module, args) is { } replaced)
                    args = replaced.Value;
            }
            frame.Args = args;

            // 3. The module's precision policy: an autocast region around forward only (hooks run outside
            //    it, like PyTorch's decorator form); Float32 also casts lower-precision inputs.
            if (node.Precision is { } policy)
            {
                args = policy.CastInputs(args, ref frame.CastInputs);
                frame.Precision = policy.Enter();
            }
            return args;
        }

        public static TResult AfterForward(HookPoint<TArgs, TResult> node, torch.nn.Module module, TArgs args, TResult result)
        {
            var stack = CallStack.CurrentOrNull;
            if (stack is null || stack.Count == 0) return result;          // fast path
            int index = stack.Find(node, module);
            if (index < 0) return result;                                  // this call took the fast path
            if (index < stack.Count - 1) FinishAbandonedCalls(stack, index + 1); // children that threw, caught in our forward
            var frame = stack[index];

            // 4. Close the precision region. TorchSharp hands the post-hook the input forward received, which
            //    is the policy's float32 copy when a Float32 policy cast it; that copy is disposed here, so the
            //    forward hooks get the input as it was after the pre-hooks (as with PyTorch's decorator form,
            //    where the cast happens inside forward).
            if (frame.CastInputs is not null && frame.Args is TArgs beforeCast) args = beforeCast;
            frame.CloseForwardScope(result);

            // 5. Forward hooks: global, then local. A non-null result replaces the output.
            //    ForwardHooksStarted is advanced before each hook runs, so a hook that throws is never re-run.
            var global = frame.GlobalForward;
            var local = frame.LocalForward;
            while (frame.ForwardHooksStarted < global.Length + local.Length)
            {
                int i = frame.ForwardHooksStarted++;
                var entry = i < global.Length ? global[i] : local[i - global.Length];
                if (entry.Fn is Func<torch.nn.Module, TArgs, TResult, HookResult<TResult>?> hook && hook(module, args, result) is { } replaced)
                    result = replaced.Value;
            }

            stack.Pop();
            return result;
        }

        /// <summary>6. The call failed: run the always_call forward hooks that have not run yet.</summary>
        public static void FinishFailedCall(CallFrame frame, List<Exception> suppressed)
        {
            try { frame.CloseForwardScope(null); }
            catch (Exception e) { suppressed.Add(e); }

            var args = frame.Args is TArgs a ? a : default!;
            var global = frame.GlobalForward;
            var local = frame.LocalForward;
            while (frame.ForwardHooksStarted < global.Length + local.Length)
            {
                int i = frame.ForwardHooksStarted++;
                var entry = i < global.Length ? global[i] : local[i - global.Length];
                if (!entry.AlwaysCall || entry.Fn is not Func<torch.nn.Module, TArgs, TResult, HookResult<TResult>?> hook) continue;
                try { hook(frame.Module, args, default!); }
                catch (Exception e) { suppressed.Add(e); }
            }
        }

        private static void FinishAbandonedCalls(CallStack stack, int keep)
        {
            var suppressed = new List<Exception>();
            stack.Unwind(keep, suppressed);
            FailureReport.Warn(suppressed, null);
        }
    }

    /// <summary>How exceptions thrown by always_call hooks during a failure are reported (PyTorch warns).</summary>
    internal static class FailureReport
    {
        public const string DataKey = "TorchHooks.SuppressedHookExceptions";

        /// <summary>
        /// Reports exceptions from always_call hooks that ran while another exception was propagating:
        /// a trace warning each, and (when there is one) attached to the original exception's
        /// <see cref="Exception.Data"/> under <see cref="DataKey"/>.
        /// </summary>
        public static void Warn(List<Exception> suppressed, Exception? original)
        {
            if (suppressed.Count == 0) return;
            foreach (var e in suppressed)
                Trace.TraceWarning($"TorchHooks: an always_call forward hook threw while the call was failing: {e.GetType().Name}: {e.Message}");
            if (original is null) return;
            var all = new List<Exception>();
            if (original.Data[DataKey] is Exception[] earlier) all.AddRange(earlier);
            all.AddRange(suppressed);
            original.Data[DataKey] = all.ToArray();
        }
    }
}
