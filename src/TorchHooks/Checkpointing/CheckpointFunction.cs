using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The autograd node of one checkpointed call — PyTorch's reentrant <c>CheckpointFunction</c>
    /// (torch/utils/checkpoint.py): forward returns the outputs computed under no_grad and saves only the inputs;
    /// backward runs the call again with grad on (same RNG and autocast state) and back-propagates the incoming
    /// gradients through it with <c>torch.autograd.backward</c>, which accumulates the parameters' gradients and gives
    /// the inputs' gradients, returned to the outer pass.
    /// </summary>
    /// <remarks>
    /// Why reentrant: PyTorch's non-reentrant checkpoint rests on saved-tensor hooks
    /// (<c>torch.autograd.graph.saved_tensors_hooks</c>), which TorchSharp 0.107 does not expose; re-entering autograd
    /// inside a custom function's backward works (TorchSharp's <c>Function</c>, <c>AutogradFunction.cs</c>), and gives
    /// gradients bit-equal to the un-checkpointed run. Like PyTorch's reentrant form it does not work with
    /// <c>torch.autograd.grad</c> on the outer graph (the parameters' gradients go to <c>.grad</c>).
    /// <para>TorchSharp facts it relies on: the function object is a singleton (per-call state travels as the first,
    /// non-tensor argument); a node is executable only if a tensor argument requires grad, so a call whose inputs need
    /// no grad (the first block of a network) passes a shared empty tensor that does (the parameters still get their
    /// gradients, as with PyTorch's non-reentrant form); <c>set_materialize_grads(false)</c> (unused outputs arrive
    /// undefined); an exception escaping backward aborts the process, so backward catches everything and the failure
    /// comes out of <c>Backward()</c>, as backward hooks' do.</para>
    /// </remarks>
    internal sealed class CheckpointFunction : torch.autograd.MultiTensorFunction<CheckpointFunction>
    {
        private const string CallKey = "checkpoint";

        public override string Name => "CheckpointFunctionBackward";

        public override List<Tensor> forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var call = (CheckpointCall)vars[0];
            ctx.save_data(CallKey, call);
            ctx.set_materialize_grads(false);
            var inputs = new List<Tensor>(vars.Length);
            for (int i = call.FirstInput; i < vars.Length; i++) inputs.Add((Tensor)vars[i]);
            ctx.save_for_backward(inputs);   // libtorch checks their version counters when backward unpacks them
            return call.TakeOutputs();
        }

        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, List<Tensor> grad_outputs)
        {
            PendingGradients.Enter();
            CheckpointCall? call = null;
            Tensor?[]? grads = null;
            try
            {
                call = (CheckpointCall)ctx.get_data(CallKey);
                if (!BackwardHookFailures.HasPendingFor(call.Node))   // a hook or recompute already failed in this pass: no more recomputes
                    grads = call.Backward(ctx, grad_outputs);
            }
            catch (Exception e)
            {
                BackwardHookFailures.Stash(e, call is null ? "a checkpointed module's recompute" : $"the recompute of checkpointed module '{call.Node.Path}' ({call.Node.Module.GetType().Name})", call?.Node);
                grads = null;
            }
            finally
            {
                // Only now: a module call in the recompute disposes the handles pending on the thread (backward hooks' way in).
                foreach (var g in grad_outputs) PendingGradients.Add(g);
                PendingGradients.Exit();
            }
            int count = call?.VarCount ?? grad_outputs.Count;
            var result = new List<Tensor>(count);
            for (int i = 0; i < count; i++) result.Add(grads is not null && i < grads.Length ? grads[i]! : null!);
            return result;
        }
    }

    /// <summary>One checkpointed call: what its recompute needs (inputs' places, RNG and autocast state) and its node's work.</summary>
    internal sealed class CheckpointCall
    {
        private static Tensor? s_anchor;
        private static readonly object s_anchorGate = new();

        public readonly HookPoint Node;
        private readonly CheckpointOptions _options;
        private readonly object?[] _items;            // the call's inputs, tensors dropped once saved in the node
        private readonly int[] _tensorAt;             // where the tensor inputs are among the items
        private readonly bool[] _requiresGrad;        // which of them require grad
        private readonly Func<HookPoint, object?[], object?> _run;
        private readonly byte[]? _rng;
        private readonly AutocastState _autocast;
        private int[] _outputAt = Array.Empty<int>();
        private List<Tensor>? _outputs;

        /// <summary>The index of the first input tensor among the node's arguments (after this object and the anchor, if any).</summary>
        public int FirstInput { get; private set; } = 1;

        /// <summary>How many arguments the node has (this object, the anchor if any, the input tensors).</summary>
        public int VarCount => FirstInput + _tensorAt.Length;

        public CheckpointCall(HookPoint node, CheckpointOptions options, object?[] items, Func<HookPoint, object?[], object?> run)
        {
            Node = node; _options = options; _items = items; _run = run;
            var at = new List<int>();
            for (int i = 0; i < items.Length; i++)
            {
                if (items[i] is Tensor t && !t.IsInvalid) at.Add(i);
                else if (items[i] is ITuple or System.Collections.IEnumerable and not string)
                    throw new NotSupportedException($"Checkpointed module '{node.Path}' ({node.Module.GetType().Name}): input {i} is a {items[i]!.GetType().Name}; checkpointing takes tensors and plain values as inputs (PyTorch's checkpoint does not look inside containers either). Pass the tensors as separate inputs, or do not checkpoint this module.");
            }
            _tensorAt = at.ToArray();
            _requiresGrad = Array.ConvertAll(_tensorAt, i => ((Tensor)items[i]!).requires_grad);
            if (options.preserve_rng_state)
            {
                using var state = torch.get_rng_state();
                _rng = state.bytes.ToArray();
            }
            _autocast = AutocastState.Capture();
        }

        /// <summary>The top-level items of a module's inputs or outputs: the value itself, or the tuple's items.</summary>
        public static object?[] Items(object? value)
        {
            if (value is not ITuple tuple) return new[] { value };
            var items = new object?[tuple.Length];
            for (int i = 0; i < items.Length; i++) items[i] = tuple[i];
            return items;
        }

        /// <summary>Whether a graph would be recorded for the call: an input tensor or a parameter of the module requires grad.</summary>
        public static bool NeedsGraph(object?[] items, torch.nn.Module module)
        {
            foreach (var item in items)
                if (item is Tensor t && !t.IsInvalid && t.requires_grad) return true;
            foreach (var p in module.parameters())
                if (p.requires_grad) return true;
            return false;
        }

        /// <summary>
        /// The way out: routes the output tensors of the call (made under no_grad) through one node; returns the output
        /// with the node's outputs in their places.
        /// </summary>
        public TResult Wrap<TResult>(TResult result)
        {
            var outItems = Items(result);
            var at = new List<int>();
            for (int i = 0; i < outItems.Length; i++)
            {
                if (outItems[i] is Tensor t && !t.IsInvalid) at.Add(i);
                else if (outItems[i] is ITuple or System.Collections.IEnumerable and not string)
                    throw new NotSupportedException($"Checkpointed module '{Node.Path}' ({Node.Module.GetType().Name}) returned a {outItems[i]!.GetType().Name} at output {i}: only a tensor or a tuple of tensors (and plain values) can be checkpointed, else the gradients inside it would be lost. Do not checkpoint this module, or checkpoint its submodules.");
            }
            if (at.Count == 0) return result;
            _outputAt = at.ToArray();
            var made = new List<Tensor>(at.Count);
            foreach (var i in at) made.Add((Tensor)outItems[i]!);
            _outputs = made;

            bool anchor = !_requiresGrad.Contains(true);
            FirstInput = anchor ? 2 : 1;
            var vars = new object[VarCount];
            vars[0] = this;
            if (anchor) vars[1] = Anchor;
            for (int k = 0; k < _tensorAt.Length; k++) vars[FirstInput + k] = _items[_tensorAt[k]]!;
            var wrapped = CheckpointFunction.apply(vars);
            foreach (var i in _tensorAt) _items[i] = null;   // the node keeps them (saved variables)

            for (int k = 0; k < at.Count; k++) outItems[at[k]] = wrapped[k];
            var replaced = result is ITuple ? (TResult)Activator.CreateInstance(typeof(TResult), outItems)! : (TResult)outItems[0]!;
            // The handles forward returned now stand for the same tensors as the node's outputs: drop them, unless
            // forward returned a tensor that lives on (an input, a parameter).
            for (int k = 0; k < made.Count; k++)
                if (made[k] is not TorchSharp.Modules.Parameter && !Array.Exists(vars, v => ReferenceEquals(v, made[k])) && !ReferenceEquals(made[k], wrapped[k]))
                    made[k].Dispose();
            return replaced;
        }

        /// <summary>The call threw before its output was wrapped: nothing to keep.</summary>
        public void Abandon()
        {
            Array.Clear(_items);
            _outputs = null;
        }

        /// <summary>The node's forward: the outputs it returns (once).</summary>
        public List<Tensor> TakeOutputs()
        {
            var outputs = _outputs ?? new List<Tensor>();
            _outputs = null;
            return outputs;
        }

        /// <summary>
        /// A shared empty tensor that requires grad: a node whose inputs need no grad gets it as an extra argument, so
        /// that libtorch makes the node executable (the parameters' gradients come from its backward).
        /// </summary>
        private static Tensor Anchor
        {
            get
            {
                if (s_anchor is { } a) return a;
                lock (s_anchorGate)
                    return s_anchor ??= torch.empty(0).requires_grad_(true).DetachFromDisposeScope();
            }
        }

        /// <summary>
        /// The node's backward: runs the call again (grad on, the call's RNG and autocast state), back-propagates
        /// <paramref name="gradOutputs"/> through it, and returns the gradients for the node's arguments.
        /// </summary>
        public Tensor?[] Backward(torch.autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            List<Tensor> saved;
            try { saved = ctx.get_saved_variables(); }
            catch (Exception e)
            {
                throw new InvalidOperationException(
                    $"Checkpointed module '{Node.Path}' ({Node.Module.GetType().Name}): an input of the call was modified in place after the call " +
                    "(libtorch: " + e.Message.Split('\n')[0] + "). The recompute would run on the changed values and give wrong gradients. " +
                    "Clone the tensor before modifying it (x = x.clone()), or do not checkpoint this module.", e);
            }
            var grads = new Tensor?[VarCount];
            try { return BackwardOn(saved, gradOutputs, grads); }
            finally { foreach (var t in saved) t?.Dispose(); }
        }

        private Tensor?[] BackwardOn(List<Tensor> saved, List<Tensor> gradOutputs, Tensor?[] grads)
        {
            using var scope = torch.NewDisposeScope();   // the recompute's activations are freed as soon as its backward is done
            var detached = new Tensor[saved.Count];
            for (int k = 0; k < saved.Count; k++)
            {
                detached[k] = saved[k].detach();
                if (_requiresGrad[k]) detached[k].requires_grad_(true);
            }
            var items = (object?[])_items.Clone();
            for (int k = 0; k < _tensorAt.Length; k++) items[_tensorAt[k]] = detached[k];

            var buffers = _options.KeepBuffersInRecompute ? KeepBuffers() : null;
            try
            {
                var output = RunAgain(items);
                var outItems = Items(output);
                var outs = new List<Tensor>();
                var ins = new List<Tensor>();
                for (int k = 0; k < _outputAt.Length && k < gradOutputs.Count; k++)
                {
                    var g = gradOutputs[k];
                    if (g is null || g.IsInvalid) continue;   // an unused output: no gradient flows from it
                    if (_outputAt[k] < outItems.Length && outItems[_outputAt[k]] is Tensor y && !y.IsInvalid && y.requires_grad)
                    {
                        outs.Add(y);
                        ins.Add(g);
                    }
                }
                if (outs.Count > 0) torch.autograd.backward(outs, ins);
            }
            finally
            {
                // After the recompute's backward, which may need the buffers as they were (BatchNorm saves its running statistics).
                if (buffers is not null)
                    using (torch.no_grad())
                        foreach (var (b, copy) in buffers) b.copy_(copy);
            }
            for (int k = 0; k < detached.Length; k++)
            {
                if (!_requiresGrad[k] || detached[k].grad is not { } g) continue;
                grads[FirstInput + k] = g.DetachFromDisposeScope();
                PendingGradients.Add(g);
            }
            return grads;
        }

        /// <summary>Copies of the module's buffers (<see cref="CheckpointOptions.KeepBuffersInRecompute"/>), in the caller's dispose scope.</summary>
        private List<(Tensor Buffer, Tensor Copy)> KeepBuffers()
        {
            var kept = new List<(Tensor, Tensor)>();
            foreach (var b in Node.Module.buffers())
                if (!b.IsInvalid) kept.Add((b, b.clone()));
            return kept;
        }

        /// <summary>The recompute: the module call again, with grad on, under the call's RNG and autocast state.</summary>
        private object? RunAgain(object?[] items)
        {
            byte[]? current = null;
            if (_rng is not null)
            {
                using var now = torch.get_rng_state();
                current = now.bytes.ToArray();
                SetRng(_rng);
            }
            try
            {
                using var grad = torch.enable_grad();
                var region = _autocast.Apply();
                try { return CheckpointConcern.Recompute(Node, () => _run(Node, items)); }
                finally { region.Dispose(); }
            }
            finally
            {
                if (current is not null) SetRng(current);
            }
        }

        private static void SetRng(byte[] state)
        {
            using var t = torch.tensor(state, torch.ScalarType.Byte);
            torch.set_rng_state(t);
        }

        // ---- the recompute call: module.call with the inputs as TorchSharp's call takes them ----

        private static readonly ConcurrentDictionary<Type, MethodInfo> s_callMethods = new();

        /// <summary>Calls <paramref name="module"/> (its whole call path: hooks, precision...) with <paramref name="items"/> as its inputs.</summary>
        public static object? Invoke<TArgs, TResult>(torch.nn.Module module, object?[] items)
        {
            if (module is torch.nn.Module<TArgs, TResult> one && items.Length == 1) return one.call((TArgs)items[0]!);
            var call = s_callMethods.GetOrAdd(module.GetType(), FindCall);
            return call.Invoke(module, BindingFlags.DoNotWrapExceptions, null, items, null);
        }

        private static MethodInfo FindCall(Type type)
        {
            var moduleType = Dispatchers.FindModuleBase(type) ?? throw new NotSupportedException($"{type.Name} has no TorchSharp forward signature.");
            int n = moduleType.GetGenericArguments().Length - 1;
            return moduleType.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                .First(m => m.Name == "call" && m.GetParameters().Length == n && !m.IsGenericMethod);
        }
    }
}
