using System;
using System.Collections.Generic;

namespace TorchHooks
{
    /// <summary>
    /// One concern on the module call path — forward hooks, per-module precision, and next backward hooks and
    /// tracing. TorchSharp's sealed <c>call</c> gives TorchHooks a pre/post pair around <c>forward</c>, not a
    /// wrapper, so a concern is split-phase, like ASP.NET Core's <c>IActionFilter</c>: it acts on the way in
    /// (<see cref="CallSteps{TArgs,TResult}.In"/>), on the way out (<see cref="CallSteps{TArgs,TResult}.Out"/>)
    /// and when the call fails (<see cref="CallSteps{TArgs,TResult}.Failed"/>).
    /// </summary>
    /// <remarks>
    /// <para>A concern is one file plus one line in <see cref="CallPath.Concerns"/>; that line says where its
    /// way-in and way-out steps run (<see cref="WayIn"/>, <see cref="WayOut"/>). Example:
    /// <c>Precision/Precision.cs</c>.</para>
    /// <para>The fast path: a call is skipped entirely (no frame, no step runs) unless some concern
    /// <see cref="IsActiveFor"/> the module or <see cref="IsActiveEverywhere"/>. Those two are asked only when
    /// a concern's state changes (it calls <see cref="HookPoint.Recompute"/> or
    /// <see cref="CallPath.RecomputeEverywhere"/>), never per call; the call path reads one cached flag each.</para>
    /// <para>Per-call state: <see cref="CallFrame.State"/> gives the concern its own reusable object in the
    /// frame of the call (allocated once per frame, reused after, cleared when the frame is popped), so an
    /// active call allocates nothing for it.</para>
    /// <para>Per-module state (hook lists, a policy) goes on the per-module node as a field of a
    /// <c>partial class HookPoint</c> in the concern's own file, with its public registration API there too
    /// (<c>Precision/Precision.cs</c>: <c>SetPrecision</c>); call <see cref="HookPoint.Recompute"/> when it
    /// changes. A <see cref="HookList"/> needs the node's callback, so create it lazily:
    /// <c>HookList Backward =&gt; _backward ?? Interlocked.CompareExchange(ref _backward, new HookList(Recompute), null) ?? _backward!;</c>.
    /// Global state (global hooks, tracing switched on) calls <see cref="CallPath.RecomputeEverywhere"/>.</para>
    /// <para>Registration must not add an overload per arity: take inputs and gradients as the module's
    /// <c>TArgs</c> (a tuple) or as a list, as PyTorch's tuples; typed-per-arity sugar, if any, belongs in the
    /// generated family (src/TorchHooks.Generators).</para>
    /// </remarks>
    internal abstract class CallConcern
    {
        /// <summary>The concern's index in <see cref="CallPath.Concerns"/>: its slot in every <see cref="CallFrame"/>.</summary>
        internal int Slot = -1;

        /// <summary>Whether the concern has work for calls of <paramref name="node"/>'s module (its local state).</summary>
        public abstract bool IsActiveFor(HookPoint node);

        /// <summary>Whether the concern has work for every module of every wrapped tree (global hooks, tracing on).</summary>
        public virtual bool IsActiveEverywhere => false;

        /// <summary>
        /// The concern's steps for modules whose input is <typeparamref name="TArgs"/> (a tuple for several
        /// inputs) and output <typeparamref name="TResult"/>. Called once per signature, when
        /// <see cref="CallPath{TArgs,TResult}"/> is first used for it.
        /// </summary>
        public abstract CallSteps<TArgs, TResult> Steps<TArgs, TResult>();
    }

    /// <summary>
    /// What a <see cref="CallConcern"/> does during one call of a module of one signature. The steps run only
    /// for calls the concern was active for (<see cref="CallConcern.IsActiveFor"/> or
    /// <see cref="CallConcern.IsActiveEverywhere"/>) when the call began, so <see cref="Out"/> and
    /// <see cref="Failed"/> follow an <see cref="In"/> of the same call; a concern switched on mid-call joins
    /// the next call. Its state may still have changed since (a policy removed), so steps check what they use.
    /// </summary>
    internal abstract class CallSteps<TArgs, TResult>
    {
        /// <summary>The way in, before <c>forward</c>. May replace the inputs that later steps and forward see.</summary>
        public virtual void In(CallFrame frame, ref TArgs args) { }

        /// <summary>
        /// The way out, after <c>forward</c>. May replace the output, and the inputs later way-out steps see
        /// (forward hooks see the inputs as they were before precision's cast).
        /// </summary>
        public virtual void Out(CallFrame frame, ref TArgs args, ref TResult result) { }

        /// <summary>
        /// The call failed (forward, a step or a hook threw), possibly before this concern's
        /// <see cref="In"/> ran: finish what the concern started. Never throw; add exceptions to
        /// <paramref name="suppressed"/> (they are reported, the original exception propagates).
        /// </summary>
        public virtual void Failed(CallFrame frame, List<Exception> suppressed) { }
    }

    /// <summary>A concern's per-call state, kept in a <see cref="CallFrame"/> slot and reused by later calls.</summary>
    internal abstract class CallState
    {
        /// <summary>Forget this call (the frame is popped); drop references so nothing is kept alive.</summary>
        public abstract void Clear();
    }

    /// <summary>
    /// The steps on the way in, in PyTorch's order (<c>Module._call_impl</c>). Every step has a place here,
    /// whether its concern exists yet or not; <see cref="CallPath.Concerns"/> puts each concern at one.
    /// </summary>
    internal enum WayIn
    {
        /// <summary>Tracing: the call begins (outermost; slot for the tracing concern).</summary>
        Tracing,
        /// <summary>Activation checkpointing: grad mode goes off for the whole call, hooks included (slot for the checkpointing concern).</summary>
        Checkpoint,
        /// <summary>Forward pre-hooks, global then local.</summary>
        ForwardPreHooks,
        /// <summary>Backward hooks wrap the inputs (after the pre-hooks; slot for the backward-hooks concern).</summary>
        BackwardInputWrap,
        /// <summary>Precision: the module's autocast region opens around forward only (innermost).</summary>
        Precision,
    }

    /// <summary>The steps on the way out (and, in the same order, on failure), in PyTorch's order.</summary>
    internal enum WayOut
    {
        /// <summary>Precision: the region closes (innermost).</summary>
        Precision,
        /// <summary>Forward hooks, global then local.</summary>
        ForwardHooks,
        /// <summary>Backward hooks wrap the outputs (after the forward hooks; slot for the backward-hooks concern).</summary>
        BackwardOutputWrap,
        /// <summary>Activation checkpointing: grad mode comes back, the output is routed through the recompute node (slot for the checkpointing concern).</summary>
        Checkpoint,
        /// <summary>Tracing: the call ends (outermost; slot for the tracing concern).</summary>
        Tracing,
    }
}
