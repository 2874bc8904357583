using System;
using System.Collections.Generic;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The hook site of one module of a wrapped tree (TransformerLens calls these hook points): the per-module
    /// node every concern of the call path keeps its state on — forward hooks (<c>ForwardHooks/</c>), backward hooks (<c>Backward/</c>), call-path hooks (<c>ModelHooks/</c>), precision
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
            Id = Interlocked.Increment(ref s_nextId);
        }

        private static int s_nextId = -1;

        /// <summary>A number unique to this node, in creation order: indexes per-thread tables on the call path (call counts).</summary>
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
            lock (s_recomputeGate) _active = CallPath.ActiveFor(this);
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

        // The trees this module was wrapped in, by ModuleTree.Id (ids, not references: a shared module must not keep
        // another model alive). Under Dispatchers' lock.
        private int _tree = -1;
        private List<int>? _moreTrees;

        /// <summary>Records that the module belongs to the tree with id <paramref name="treeId"/>; under <see cref="Dispatchers"/>' lock.</summary>
        internal void AddTree(int treeId)
        {
            if (_tree == treeId || _moreTrees?.Contains(treeId) == true) return;
            if (_tree < 0) _tree = treeId;
            else (_moreTrees ??= new List<int>()).Add(treeId);
        }

        /// <summary>The ids of the trees this module was wrapped in; under <see cref="Dispatchers"/>' lock.</summary>
        internal IEnumerable<int> TreeIds()
        {
            if (_tree >= 0) yield return _tree;
            if (_moreTrees is not null) foreach (var id in _moreTrees) yield return id;
        }

        // One lock for all nodes: recomputing is rare (registration), and a lock object per node made wrapping slower.
        private static readonly object s_recomputeGate = new();

        internal abstract void FinishFailedCall(CallFrame frame, List<Exception> suppressed);

        /// <inheritdoc />
        public override string ToString()
            => $"HookPoint('{Path}', {Module.GetType().Name}: {Signature}, {ForwardPreHookCount} forward pre, {ForwardHookCount} forward, " +
               $"{BackwardPreHookCount} backward pre, {BackwardHookCount} full backward, {ModelHookChain.Length} call-path hook(s){(Precision is { } p ? $", precision {p}" : "")})";
    }

    /// <summary>The hook site of a module whose inputs are <typeparamref name="TArgs"/> (a tuple for several inputs).</summary>
    internal sealed partial class SignatureNode<TArgs, TResult> : HookPoint
    {
        public SignatureNode(torch.nn.Module module, string path, string signature, Action<HookPoint> attach) : base(module, path, signature, attach) { }

        /// <summary>The concerns' steps for this signature (shared by every node of it).</summary>
        internal readonly CallPlan<TArgs, TResult> Plan = CallPlan<TArgs, TResult>.Instance;

        public TArgs Pre(TArgs args) => CallPath<TArgs, TResult>.BeforeForward(this, args);

        public TResult Post(CallStack stack, TArgs args, TResult result) => CallPath<TArgs, TResult>.AfterForward(this, stack, args, result);

        internal override void FinishFailedCall(CallFrame frame, List<Exception> suppressed) => CallPath<TArgs, TResult>.FinishFailedCall(this, frame, suppressed);
    }
}
