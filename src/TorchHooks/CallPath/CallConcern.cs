using System;
using System.Collections.Generic;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// One concern on the module call path (forward hooks, precision, backward hooks, tracing, ...). TorchSharp's
    /// sealed <c>call</c> gives TorchHooks a pre/post pair around <c>forward</c>, not a wrapper, so a concern is
    /// split-phase, like ASP.NET Core's <c>IActionFilter</c>: it acts on the way in
    /// (<see cref="CallSteps{TArgs,TResult}.In"/>), on the way out (<see cref="CallSteps{TArgs,TResult}.Out"/>)
    /// and when the call fails (<see cref="CallSteps{TArgs,TResult}.Failed"/>); optionally also when the outermost
    /// facade call on a thread begins and ends (<see cref="OuterCallBegins"/>, <see cref="OuterCallEnds"/>).
    /// </summary>
    /// <remarks>
    /// <para>Adding a concern: its own file(s) and one line in <see cref="CallPath.Concerns"/>; that line says where
    /// its way-in and way-out steps run (two numbers on the scale in <see cref="ConcernEntry"/>). A concern never
    /// names another concern: what one needs from another goes through the seam — the facade-call steps here,
    /// <see cref="BackwardEvents"/> for gradients and backward timings, <see cref="CallFrame"/> for the call.
    /// Example: <c>Precision/Precision.cs</c>. docs/hooks.md, "Adding a concern", walks through it.</para>
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
    /// Global hook lists are made with <see cref="HookList.Global"/>, which registers the kind, so
    /// <c>ModuleHooks.Handles</c>/<c>RemoveAll</c> see it. Global state (global hooks, tracing switched on) calls
    /// <see cref="CallPath.RecomputeEverywhere"/>.</para>
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

        /// <summary>
        /// The outermost facade call on this thread begins (before any module call of it): e.g. re-read an outside
        /// switch once per call, open a gate for the duration of the call. Return true to have
        /// <see cref="OuterCallEnds"/> run when that facade call ends. Runs only for concerns that override it (found
        /// once); keep it cheap, it runs on every facade call. May throw: the concerns begun before it are ended.
        /// </summary>
        /// <param name="root">The wrapped model (the facade's inner module).</param>
        public virtual bool OuterCallBegins(torch.nn.Module root) => false;

        /// <summary>The outermost facade call whose <see cref="OuterCallBegins"/> returned true has ended (returned or threw). Never throw.</summary>
        public virtual void OuterCallEnds() { }
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
    /// One line of <see cref="CallPath.Concerns"/>: a concern and its places on the way in and on the way out.
    /// Places are numbers on one scale per direction (lower runs first); the concerns' places, in PyTorch's order
    /// (<c>Module._call_impl</c>), with room between them for more:
    /// <code>
    ///   way in                                              way out (and failure)
    ///   100  tracing: the call begins                       100  precision: the region closes
    ///   200  forward pre-hooks (global, then local)         200  call-path hooks: post_forward (Accelerate, inside forward)
    ///   300  backward hooks wrap the inputs                 300  forward hooks (global, then local)
    ///   400  call-path hooks: pre_forward (inside forward)  400  backward hooks wrap the outputs
    ///   500  precision: the region opens (innermost)        900  tracing: the call ends (outermost)
    /// </code>
    /// A concern with steps at the outermost facade call only (<see cref="CallConcern.OuterCallBegins"/>) and none
    /// per module call takes <see cref="NoPlace"/> for both.
    /// </summary>
    internal readonly struct ConcernEntry
    {
        /// <summary>No steps on module calls (the concern acts at facade-call begin/end only, and is never active for a module).</summary>
        public const int NoPlace = 0;

        public ConcernEntry(CallConcern concern, int wayIn, int wayOut)
        {
            Concern = concern ?? throw new ArgumentNullException(nameof(concern));
            In = wayIn;
            Out = wayOut;
        }

        public CallConcern Concern { get; }
        /// <summary>Its place on the way in (lower runs first).</summary>
        public int In { get; }
        /// <summary>Its place on the way out and on failure (lower runs first).</summary>
        public int Out { get; }
    }
}
