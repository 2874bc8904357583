using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The module call path — TorchHooks' counterpart of PyTorch's <c>Module._call_impl</c>, in one place.
    ///
    /// TorchSharp's sealed <c>Module.call</c> runs: its pre-hooks → <c>forward</c> → its post-hooks.
    /// TorchHooks installs exactly one pre-hook and one post-hook on every module of a wrapped tree
    /// (<see cref="Dispatchers"/>), so every call that goes through <c>call</c> — from a facade,
    /// <c>Sequential</c>, a <c>ModuleList</c> loop or custom forward code — reaches this file. Each concern
    /// on the path is a <see cref="CallConcern"/> listed in <see cref="Concerns"/>, one line each, with its
    /// place on the way in and on the way out (the scale: <see cref="ConcernEntry"/>):
    ///
    ///   facade    the outermost facade call on the thread begins: the concerns' OuterCallBegins steps
    ///             (<see cref="FacadeCall"/>); it ends: their OuterCallEnds steps
    ///   way in    fast path: no concern active for the module, none everywhere → return at once
    ///             a frame is pushed (call index, per-call state), then the in-steps in way-in order:
    ///               tracing → forward pre-hooks (global, then local) → backward input wrap → call-path hooks'
    ///               pre_forward → precision region opens
    ///   (TorchSharp runs forward)
    ///   way out   the out-steps in way-out order:
    ///               precision region closes → call-path hooks' post_forward → forward hooks (global, then local)
    ///               → backward output wrap → tracing
    ///   failure   forward, a pre-hook or a forward hook threw: every concern's Failed step, in way-out order
    ///             (precision closes its region, the always_call forward hooks that have not run yet run);
    ///             their own exceptions are collected, not thrown; the original exception propagates unchanged.
    ///
    /// The failure steps run when the exception reaches the enclosing facade call (<see cref="FacadeCall"/>),
    /// when it unwinds through an autocast scope opened before the call, or — caught by user code, inside a
    /// parent's forward or around a direct call — at the start or end of the next module call of a wrapped
    /// tree on the thread (<see cref="CallStack.FinishAbandoned"/>), whichever comes first.
    /// </summary>
    internal static class CallPath
    {
        /// <summary>
        /// Every concern on the call path, one line each: the concern, its place on the way in, its place on the way
        /// out (lower runs first; the scale, with every place taken so far: <see cref="ConcernEntry"/>). Adding a
        /// concern: its own file(s), and one line here.
        /// </summary>
        internal static readonly ConcernEntry[] Concerns =
        {
            //  the concern                          way in  way out
            new(TracingConcern.Instance,              100,    900),
            new(ForwardHooksConcern.Instance,         200,    300),
            new(BackwardHooksConcern.Instance,        300,    400),
            new(CheckpointConcern.Instance,           150,    850),
            new(ModelHookConcern.Instance,            400,    200),
            new(PrecisionConcern.Instance,            500,    100),
            new(WeightCastConcern.Instance,           ConcernEntry.NoPlace, ConcernEntry.NoPlace),
        };

        /// <summary>The concerns with steps on module calls, in way-in order, and in way-out (and failure) order.</summary>
        internal static readonly CallConcern[] InOrder = Order(Concerns, e => e.In);
        internal static readonly CallConcern[] OutOrder = Order(Concerns, e => e.Out);

        /// <summary>The concerns with steps at the outermost facade call (they override <see cref="CallConcern.OuterCallBegins"/>), in list order.</summary>
        private static readonly CallConcern[] s_outer = Array.FindAll(Array.ConvertAll(Concerns, e => e.Concern), HasOuterSteps);

        /// <summary>
        /// The outermost facade call on this thread begins: every concern's <see cref="CallConcern.OuterCallBegins"/>.
        /// Returns the concerns to end (bit <see cref="CallConcern.Slot"/> of each), for <see cref="OuterCallEnds"/>.
        /// If one throws, the ones begun are ended and the exception propagates.
        /// </summary>
        internal static int OuterCallBegins(torch.nn.Module root)
        {
            int begun = 0;
            var outer = s_outer;
            try
            {
                for (int i = 0; i < outer.Length; i++)
                    if (outer[i].OuterCallBegins(root)) begun |= 1 << outer[i].Slot;
            }
            catch
            {
                OuterCallEnds(begun);
                throw;
            }
            return begun;
        }

        /// <summary>The outermost facade call ended: <see cref="CallConcern.OuterCallEnds"/> of the concerns in <paramref name="begun"/>, in reverse order.</summary>
        internal static void OuterCallEnds(int begun)
        {
            if (begun == 0) return;
            var outer = s_outer;
            for (int i = outer.Length - 1; i >= 0; i--)
            {
                if ((begun & (1 << outer[i].Slot)) == 0) continue;
                try { outer[i].OuterCallEnds(); }
                catch (Exception e) { Trace.TraceWarning($"TorchHooks: {outer[i].GetType().Name}.OuterCallEnds threw (it must not): {e.GetType().Name}: {e.Message}"); }
            }
        }

        private static bool HasOuterSteps(CallConcern concern)
            => concern.GetType().GetMethod(nameof(CallConcern.OuterCallBegins))!.DeclaringType != typeof(CallConcern);

        private static volatile int s_activeEverywhere;

        /// <summary>Whether some concern is active for every module (the fast path's global flag).</summary>
        internal static bool ActiveEverywhere => s_activeEverywhere != 0;

        /// <summary>The concerns active for every module: bit <see cref="CallConcern.Slot"/> of each.</summary>
        internal static int ConcernsActiveEverywhere => s_activeEverywhere;

        /// <summary>Recomputes <see cref="ActiveEverywhere"/>; a concern calls it when its global state changes.</summary>
        internal static void RecomputeEverywhere()
        {
            lock (s_recomputeGate)   // serialized, like HookPoint.Recompute: the last write sees every change before it
            {
                int mask = 0;
                foreach (var c in Concerns)
                    if (c.Concern.IsActiveEverywhere) mask |= 1 << c.Concern.Slot;
                s_activeEverywhere = mask;
                Dispatchers.ArmEverywhere(mask != 0);   // dispatchers on every wrapped module while something is active everywhere
            }
        }

        private static readonly object s_recomputeGate = new();

        /// <summary>The concerns with work for <paramref name="node"/>'s module, one bit each (feeds <see cref="HookPoint.IsActive"/>).</summary>
        internal static int ActiveFor(HookPoint node)
        {
            int mask = 0;
            foreach (var c in Concerns)
                if (c.Concern.IsActiveFor(node)) mask |= 1 << c.Concern.Slot;
            return mask;
        }

        private static CallConcern[] Order(ConcernEntry[] list, Func<ConcernEntry, int> place)
        {
            if (list.Length > 31) throw new InvalidOperationException("At most 31 concerns: each has one bit in the active masks.");
            for (int i = 0; i < list.Length; i++)
            {
                list[i].Concern.Slot = i;
                if ((list[i].In == ConcernEntry.NoPlace) != (list[i].Out == ConcernEntry.NoPlace))
                    throw new InvalidOperationException($"{list[i].Concern.GetType().Name} has a place on one way only: give it both, or NoPlace for both.");
            }
            var sorted = Array.FindAll(list, e => place(e) != ConcernEntry.NoPlace);
            Array.Sort(sorted, (a, b) => place(a).CompareTo(place(b)));
            for (int i = 1; i < sorted.Length; i++)
                if (place(sorted[i]) == place(sorted[i - 1]))
                    throw new InvalidOperationException($"Two concerns take the same place on the call path: {sorted[i - 1].Concern.GetType().Name} and {sorted[i].Concern.GetType().Name}.");
            return Array.ConvertAll(sorted, e => e.Concern);
        }
    }

    /// <summary>The call path for modules whose input is <typeparamref name="TArgs"/> (a tuple for several) and output <typeparamref name="TResult"/>.</summary>
    internal static class CallPath<TArgs, TResult>
    {

        /// <summary>The way in (the dispatcher's TorchSharp pre-hook).</summary>
        public static TArgs BeforeForward(SignatureNode<TArgs, TResult> node, TArgs args)
        {
            var stack = CallStack.CurrentOrNull;
            var here = CallStack.Mark();
            // Calls that threw and were caught (inside a parent's forward, or around a direct call) are finished
            // first: their always_call hooks run and their precision regions close before this module runs.
            if (stack is { Count: > 0 }) stack.FinishAbandoned(here, node);

            // Fast path: no concern active for this module and none everywhere (the dispatcher checks this inline too).
            int active = node.ActiveConcerns | CallPath.ConcernsActiveEverywhere;
            if (active == 0) return args;

            stack ??= CallStack.Current;
            if (stack.Count >= ThreadCallState.MaxCallDepth) throw TooDeep(node, stack.Count);
            // Every 8th nesting level: 8 levels cannot use up the margin this check leaves (64 KB or more).
            if ((stack.Count & 7) == 7 && !RuntimeHelpers.TryEnsureSufficientExecutionStack()) throw StackLow(node, stack.Count);

            // Outside any facade call, the outermost hooked call starts a new pass for call indices.
            if (stack.FacadeDepth == 0 && stack.Count == 0) stack.Pass++;

            var frame = stack.Push();
            frame.Node = node;
            frame.StackMark = here;
            frame.CallIndex = stack.NextCallIndex(node);
            frame.IsRecomputation = stack.Recomputing != 0;
            // The concerns taking part in this call, fixed when it begins: a concern switched on mid-call joins the next call.
            frame.Concerns = active;

            var steps = node.Plan.In(active);
            for (int i = 0; i < steps.Length; i++) steps[i].In(frame, ref args);
            return args;
        }

        /// <summary>The way out (the dispatcher's TorchSharp post-hook), when calls are under way on the thread (<paramref name="stack"/>).</summary>
        public static TResult AfterForward(SignatureNode<TArgs, TResult> node, CallStack stack, TArgs args, TResult result)
        {
            // (The dispatcher comes here only while frames are open on the thread: CallStack.Frames.)
            int index = stack.Find(node);
            if (index < 0)                                                 // this call took the fast path:
            {
                stack.FinishAbandoned(CallStack.Mark(), node);             // calls left open inside it threw, and were caught
                if (stack.Count == 0 && stack.FacadeDepth == 0) stack.EndPass();
                return result;
            }
            if (index < stack.Count - 1) FinishAbandonedCalls(stack, index + 1); // children that threw, caught in our forward
            var frame = stack[index];

            var steps = node.Plan.Out(frame.Concerns);
            for (int i = 0; i < steps.Length; i++) steps[i].Out(frame, ref args, ref result);

            stack.Pop();
            if (stack.Count == 0 && stack.FacadeDepth == 0) stack.EndPass();
            return result;
        }

        /// <summary>The call failed: every concern's failure step, in way-out order.</summary>
        public static void FinishFailedCall(SignatureNode<TArgs, TResult> node, CallFrame frame, List<Exception> suppressed)
        {
            var steps = node.Plan.Out(frame.Concerns);
            for (int i = 0; i < steps.Length; i++)
            {
                try { steps[i].Failed(frame, suppressed); }
                catch (Exception e) { suppressed.Add(e); }
            }
        }

        private static void FinishAbandonedCalls(CallStack stack, int keep)
        {
            var suppressed = new List<Exception>();
            stack.Unwind(keep, suppressed);
            FailureReport.Warn(suppressed, null);
        }

        private static InvalidOperationException TooDeep(HookPoint node, int depth)
            => new($"Module '{node.Path}' ({node.Module.GetType().Name}) was called {depth} hooked calls deep on this thread, " +
                   $"the limit (ThreadCallState.MaxCallDepth = {ThreadCallState.MaxCallDepth}). A hook or forward that calls the model " +
                   "again needs a bound (e.g. a flag that skips the nested call); unbounded, it would overflow the stack and end the process.");

        private static InsufficientExecutionStackException StackLow(HookPoint node, int depth)
            => new($"Module '{node.Path}' ({node.Module.GetType().Name}) was called {depth} hooked calls deep and this thread's stack " +
                   $"is nearly exhausted (before ThreadCallState.MaxCallDepth = {ThreadCallState.MaxCallDepth}). A hook or forward that calls the " +
                   "model again needs a bound; or run the model on a thread with a larger stack.");
    }

    /// <summary>
    /// The concerns' steps for one signature, in way-in and way-out order, for each set of active concerns (a mask
    /// of <see cref="CallConcern.Slot"/> bits; built on first use), so a call runs exactly its active steps. Every
    /// node of that signature holds it (<see cref="SignatureNode{TArgs,TResult}.Plan"/>), so the call path reads it
    /// through an instance field rather than a static field of a shared generic class (a helper call each).
    /// </summary>
    internal sealed class CallPlan<TArgs, TResult>
    {
        public static readonly CallPlan<TArgs, TResult> Instance = new();

        private readonly CallSteps<TArgs, TResult>[] _in = Array.ConvertAll(CallPath.InOrder, c => c.Steps<TArgs, TResult>());
        private readonly CallSteps<TArgs, TResult>[] _out = Array.ConvertAll(CallPath.OutOrder, c => c.Steps<TArgs, TResult>());
        private readonly CallSteps<TArgs, TResult>[]?[] _inByMask = new CallSteps<TArgs, TResult>[]?[1 << CallPath.Concerns.Length];
        private readonly CallSteps<TArgs, TResult>[]?[] _outByMask = new CallSteps<TArgs, TResult>[]?[1 << CallPath.Concerns.Length];

        /// <summary>The way-in steps of the concerns in <paramref name="mask"/>, in order.</summary>
        public CallSteps<TArgs, TResult>[] In(int mask) => _inByMask[mask] ?? (_inByMask[mask] = Select(_in, CallPath.InOrder, mask));

        /// <summary>The way-out (and failure) steps of the concerns in <paramref name="mask"/>, in order.</summary>
        public CallSteps<TArgs, TResult>[] Out(int mask) => _outByMask[mask] ?? (_outByMask[mask] = Select(_out, CallPath.OutOrder, mask));

        private static CallSteps<TArgs, TResult>[] Select(CallSteps<TArgs, TResult>[] steps, CallConcern[] order, int mask)
        {
            var selected = new List<CallSteps<TArgs, TResult>>();
            for (int i = 0; i < steps.Length; i++)
                if ((mask & (1 << order[i].Slot)) != 0) selected.Add(steps[i]);
            return selected.ToArray();
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
