using System;
using System.Collections.Generic;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The hook site of one module of a wrapped tree (TransformerLens calls these hook points): the per-module
    /// node every concern of the call path keeps its state on — forward hooks (<c>Hooks/</c>), precision
    /// (<c>Precision/</c>). Get one from a facade with <c>model["encoder.0"]</c>. Hooks live with the module:
    /// they also fire when the module is called through the unwrapped model.
    /// </summary>
    /// <remarks>
    /// Hooks are typed by the module's forward signature. <c>Tensor → Tensor</c> modules take the
    /// non-generic overloads (<c>(m, x) =&gt; …</c>); other signatures name their types, e.g.
    /// <c>register_forward_hook&lt;Tensor, Tensor, (Tensor, Tensor)&gt;((m, a, b, y) =&gt; …)</c>.
    /// A mismatch throws <see cref="ArgumentException"/> naming the module's signature.
    /// </remarks>
    public abstract partial class HookPoint
    {
        private volatile int _active;

        private protected HookPoint(torch.nn.Module module, string path, string signature, Action<HookPoint> attach)
        {
            _attach = attach;
            Module = module;
            Path = path;
            Signature = signature;
            ForwardPre = new HookList(Recompute);
            Forward = new HookList(Recompute);
            Id = NodeIds.Take();
        }

        /// <summary>Returns the node's <see cref="Id"/> for reuse once its module is gone.</summary>
        ~HookPoint() => NodeIds.Return(Id);

        /// <summary>A small number unique among live nodes: indexes per-thread tables on the call path (call counts).</summary>
        internal readonly int Id;

        /// <summary>The module's name in the tree it was first wrapped in, as in <c>named_modules()</c>; the root is <c>""</c>.</summary>
        public string Path { get; }

        /// <summary>The module.</summary>
        public torch.nn.Module Module { get; }

        /// <summary>The module's forward signature, e.g. <c>Module&lt;Tensor, Tensor&gt;</c>.</summary>
        public string Signature { get; }

        /// <summary>Whether some concern of the call path has work for this module (the fast path's local flag).</summary>
        internal bool IsActive => _active != 0;

        /// <summary>The concerns active for this module: bit <see cref="CallConcern.Slot"/> of each.</summary>
        internal int ActiveConcerns => _active;

        /// <summary>
        /// Recomputes <see cref="IsActive"/>; a concern calls it after its state on this node changed. Serialized:
        /// each recompute reads the state after every change whose recompute ran before it, so the last write wins
        /// with the latest state (two threads changing different lists cannot leave a stale flag).
        /// </summary>
        internal void Recompute()
        {
            lock (_recomputeGate) _active = CallPath.ActiveFor(this);
            if (_active != 0) Dispatchers.Arm(this);
        }

        // Dispatching hooks: attached on first need (Dispatchers.Arm), never removed.
        private readonly Action<HookPoint> _attach;
        private volatile bool _attached;

        /// <summary>Whether TorchHooks' TorchSharp pre-/post-hook pair is on the module (see <see cref="Dispatchers"/>).</summary>
        internal bool IsAttached => _attached;

        /// <summary>Puts the dispatching hooks on the module, once; the caller holds <see cref="Dispatchers"/>' lock.</summary>
        internal void AttachLocked()
        {
            if (_attached) return;
            _attach(this);
            _attached = true;
        }

        /// <summary>The trees this module was wrapped in (weakly: a shared module must not keep another model alive).</summary>
        internal readonly List<WeakReference<ModuleTree>> Trees = new(1);

        /// <summary>Whether <paramref name="tree"/> is among <see cref="Trees"/> (drops collected trees on the way); under <see cref="Dispatchers"/>' lock.</summary>
        internal bool HasTree(ModuleTree tree)
        {
            Trees.RemoveAll(w => !w.TryGetTarget(out _));
            foreach (var weak in Trees)
                if (weak.TryGetTarget(out var t) && ReferenceEquals(t, tree)) return true;
            return false;
        }

        private readonly object _recomputeGate = new();

        internal abstract void FinishFailedCall(CallFrame frame, List<Exception> suppressed);

        /// <inheritdoc />
        public override string ToString() => $"HookPoint('{Path}', {Module.GetType().Name}: {Signature}, {ForwardPre.Count} pre, {Forward.Count} forward)";
    }

    /// <summary>Small ids for live hook points, reused after their module is collected (keeps per-thread tables small).</summary>
    internal static class NodeIds
    {
        private static readonly System.Collections.Concurrent.ConcurrentStack<int> s_free = new();
        private static int s_next = -1;

        public static int Take() => s_free.TryPop(out int id) ? id : Interlocked.Increment(ref s_next);

        public static void Return(int id) => s_free.Push(id);
    }

    /// <summary>The hook site of a module whose inputs are <typeparamref name="TArgs"/> (a tuple for several inputs).</summary>
    internal sealed partial class HookPointOf<TArgs, TResult> : HookPoint
    {
        public HookPointOf(torch.nn.Module module, string path, string signature, Action<HookPoint> attach) : base(module, path, signature, attach) { }

        /// <summary>The concerns' steps for this signature (shared by every node of it).</summary>
        internal readonly CallPlan<TArgs, TResult> Plan = CallPlan<TArgs, TResult>.Instance;

        public TArgs Pre(torch.nn.Module module, TArgs args) => CallPath<TArgs, TResult>.BeforeForward(this, module, args);

        public TResult Post(CallStack stack, torch.nn.Module module, TArgs args, TResult result) => CallPath<TArgs, TResult>.AfterForward(this, stack, module, args, result);

        internal override void FinishFailedCall(CallFrame frame, List<Exception> suppressed) => CallPath<TArgs, TResult>.FinishFailedCall(this, frame, suppressed);
    }
}
