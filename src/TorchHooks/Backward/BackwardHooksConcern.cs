using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The backward-hooks concern of the call path — PyTorch's <c>BackwardHook</c> (torch/utils/hooks.py) as set up
    /// by <c>Module._call_impl</c>: on the way in, after the forward pre-hooks, the inputs that require grad are
    /// routed through one identity autograd node (only if some input requires grad and grad mode is on); on the
    /// way out, after the forward hooks, the output tensors likewise. In backward, the output node runs the
    /// backward pre-hooks (which may replace grad_output) and keeps grad_output; the input node, once every
    /// gradient w.r.t. the inputs is accumulated, runs the full backward hooks (which may replace grad_input).
    /// No input requires grad: the full hooks run at the output node with an all-null grad_input.
    /// </summary>
    /// <remarks>
    /// <para>A new <see cref="BackwardCall"/> per call, as PyTorch's new <c>BackwardHook</c> per call: a module called
    /// twice fires twice, independently. The hook lists are snapshotted when the call begins.</para>
    /// <para>Backward timings and gradients for observers: while an observer is subscribed to the seam's route
    /// (<see cref="BackwardEvents"/>; e.g. a tracer that records backward timings), the concern also wraps the calls
    /// of the modules it wants, hooks or not; it publishes each module's grad_output at its output node
    /// (<see cref="BackwardEvents.Gradients"/>) and its backward — from its output node to its input node — to
    /// <see cref="BackwardEvents.Backward"/>. With no observer nothing changes: only modules with backward hooks are
    /// wrapped.</para>
    /// </remarks>
    internal sealed class BackwardHooksConcern : CallConcern
    {
        public static readonly BackwardHooksConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => node.BackwardPreHookCount > 0 || node.BackwardHookCount > 0;

        public override bool IsActiveEverywhere => ModuleHooks.BackwardPre.Count > 0 || ModuleHooks.Backward.Count > 0 || BackwardEvents.Requested;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>Per call: its rendezvous object, and the input views this call created (disposed when it ends).</summary>
        private sealed class State : CallState
        {
            public BackwardCall? Call;
            public List<Tensor>? Wrapped;
            public object? OriginalArgs;

            public override void Clear() { Call = null; Wrapped = null; OriginalArgs = null; }
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            /// <summary>PyTorch's <c>setup_input_hook</c>.</summary>
            public override void In(CallFrame frame, ref TArgs args)
            {
                Pending.DisposeAll();
                BackwardHookFailures.ThrowPendingBeforeForward();
                var call = BackwardCall.Create(frame.Node, frame.Module, frame.CallIndex);
                if (call is null) return;
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                state.Call = call;
                var items = Items(args, out int n);
                call.InputCount = n;
                if (!torch.is_grad_enabled()) return;
                var (index, tensors) = RequiringGrad(items);
                if (index is null) return;
                var views = BackwardHookFunction.Wrap(call.InputSite, tensors);
                call.InputIndex = index;
                call.RecordNoGradInputs(items);
                state.Wrapped = views;
                state.OriginalArgs = args;
                for (int i = 0; i < index.Length; i++) items[index[i]] = views[i];
                args = Rebuild<TArgs>(args, items);
            }

            /// <summary>PyTorch's <c>setup_output_hook</c>: the output as the forward hooks left it.</summary>
            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { Call: { } call } state) return;
                var original = result;
                if (result is Tensor || result is ITuple)
                {
                    var items = Items(result, out int n);
                    call.OutputCount = n;
                    var (index, tensors) = torch.is_grad_enabled() ? RequiringGrad(items) : (null, null!);
                    if (index is not null)
                    {
                        var views = BackwardHookFunction.Wrap(call.OutputSite, tensors);
                        call.OutputIndex = index;
                        for (int i = 0; i < index.Length; i++) items[index[i]] = views[i];
                        result = Rebuild<TResult>(result, items);
                        // The un-wrapped outputs were made by forward and are replaced by views: dispose them, unless
                        // forward returned a tensor that lives on (an input, a parameter).
                        foreach (var t in tensors)
                            if (t is not TorchSharp.Modules.Parameter && !Contains(args, t) && !Contains(state.OriginalArgs, t) && !Contains(result, t))
                                t.Dispose();
                    }
                }
                else if (call.HasHooks)   // a call wrapped only for a backward observer warns nobody
                {
                    BackwardCall.WarnNotTensorOutput(frame.Node, typeof(TResult));
                }
                DisposeWrappedInputs(state, result);
            }

            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                try { DisposeWrappedInputs(state, null); }
                catch (Exception e) { suppressed.Add(e); }
            }

            private static void DisposeWrappedInputs(State state, object? keep)
            {
                if (state.Wrapped is not { } views) return;
                state.Wrapped = null;
                foreach (var v in views)
                    if (!Contains(keep, v)) v.Dispose();
            }
        }

        /// <summary>The top-level elements of a module's input or output: the tensor itself, or the tuple's items (PyTorch: positional args / tuple output, no nesting).</summary>
        internal static object?[] Items(object? value, out int count)
        {
            object?[] items;
            if (value is ITuple tuple)
            {
                items = new object?[tuple.Length];
                for (int i = 0; i < items.Length; i++) items[i] = tuple[i];
            }
            else items = new[] { value };
            count = items.Length;
            return items;
        }

        private static (int[]? Index, List<Tensor> Tensors) RequiringGrad(object?[] items)
        {
            List<int>? index = null;
            var tensors = new List<Tensor>();
            for (int i = 0; i < items.Length; i++)
            {
                if (items[i] is Tensor t && !t.IsInvalid && t.requires_grad)
                {
                    (index ??= new List<int>()).Add(i);
                    tensors.Add(t);
                }
            }
            return (index?.ToArray(), tensors);
        }

        private static T Rebuild<T>(T original, object?[] items)
            => original is ITuple ? (T)Activator.CreateInstance(original.GetType(), items)! : (T)items[0]!;

        private static bool Contains(object? value, Tensor t)
        {
            if (value is null) return false;
            if (ReferenceEquals(value, t)) return true;
            if (value is ITuple tuple)
                for (int i = 0; i < tuple.Length; i++)
                    if (ReferenceEquals(tuple[i], t)) return true;
            return false;
        }
    }

    /// <summary>
    /// One module call's backward hooks (PyTorch: one <c>BackwardHook</c> object): the hooks as they were when the
    /// call began, where the tensors sit among the inputs and outputs, and grad_output between the output node
    /// and the input node.
    /// </summary>
    internal sealed class BackwardCall
    {
        private readonly HookPoint _node;
        private readonly torch.nn.Module _module;
        private readonly HookEntry[] _pre;
        private readonly HookEntry[] _full;
        private readonly int _callIndex;
        /// <summary>Whether an observer of <see cref="BackwardEvents"/> wants this call's backward; when the output node ran (Stopwatch timestamp).</summary>
        private readonly bool _observed;
        private long _backwardStart;
        private Tensor?[]? _gradOutputs;
        private readonly object _gate = new();

        public int InputCount;
        public int[]? InputIndex;
        public int OutputCount;
        public int[]? OutputIndex;
        /// <summary>Tensor inputs that need no grad, beside ones that do: PyTorch's grad_input has zeros there (its identity node materializes them).</summary>
        private List<(int Position, long[] Shape, torch.ScalarType Dtype, torch.Device Device)>? _zeroInputs;
        public readonly GradientSite InputSite;
        public readonly GradientSite OutputSite;

        private BackwardCall(HookPoint node, torch.nn.Module module, HookEntry[] pre, HookEntry[] full, int callIndex, bool observed)
        {
            _node = node; _module = module; _pre = pre; _full = full; _callIndex = callIndex; _observed = observed;
            InputSite = new Side(this, input: true);
            OutputSite = new Side(this, input: false);
        }

        /// <summary>
        /// The call's hooks, global before local, and whether an observer of <see cref="BackwardEvents"/> wants its backward;
        /// null when there are no hooks (removed since the flags were computed) and no observer wants this module.
        /// </summary>
        public static BackwardCall? Create(HookPoint node, torch.nn.Module module, int callIndex)
        {
            var pre = Concat(ModuleHooks.BackwardPre.Snapshot, node.BackwardPre.Snapshot);
            var full = Concat(ModuleHooks.Backward.Snapshot, node.Backward.Snapshot);
            bool observed = BackwardEvents.Requested && BackwardEvents.Wants(node) && torch.is_grad_enabled();
            return pre.Length + full.Length == 0 && !observed ? null : new BackwardCall(node, module, pre, full, callIndex, observed);
        }

        private static HookEntry[] Concat(HookEntry[] a, HookEntry[] b)
        {
            if (a.Length == 0) return b;
            if (b.Length == 0) return a;
            var all = new HookEntry[a.Length + b.Length];
            a.CopyTo(all, 0);
            b.CopyTo(all, a.Length);
            return all;
        }

        /// <summary>Whether the call has backward hooks (else it is wrapped only for a backward observer).</summary>
        public bool HasHooks => _pre.Length + _full.Length > 0;

        public void RecordNoGradInputs(object?[] items)
        {
            for (int i = 0; i < items.Length; i++)
                if (items[i] is Tensor t && !t.IsInvalid && !t.requires_grad)
                    (_zeroInputs ??= new()).Add((i, t.shape, t.dtype, t.device));
        }

        private sealed class Side : GradientSite
        {
            private readonly BackwardCall _call;
            private readonly bool _input;
            public Side(BackwardCall call, bool input) { _call = call; _input = input; }
            public override Tensor?[] OnBackward(Tensor?[] grads) => _input ? _call.InputBackward(grads) : _call.OutputBackward(grads);

            public override string Where => $"module '{_call._node.Path}' ({_call._module.GetType().Name}), {(_input ? "a full backward hook" : "a backward pre-hook or a full backward hook")}";
        }

        /// <summary>The output node's backward (PyTorch's output hook): pre-hooks; full hooks too if no input requires grad.</summary>
        private Tensor?[] OutputBackward(Tensor?[] grads)
        {
            if (_observed) _backwardStart = Stopwatch.GetTimestamp();
            if (BackwardHookFailures.HasPending) return grads;
            var gradOutputs = Spread(grads, OutputIndex!, OutputCount);
            foreach (var entry in _pre)
            {
                if (((BackwardPreHook)entry.Fn)(_module, gradOutputs) is { } replaced)
                {
                    if (replaced.Count != gradOutputs.Length)
                        throw new InvalidOperationException($"Backward pre hook returned an invalid number of grad_output, got {replaced.Count}, but expected {gradOutputs.Length} (module '{_node.Path}', {_module.GetType().Name}).");
                    gradOutputs = Copy(replaced);
                }
            }
            if (_observed) BackwardEvents.Gradients(_node, _callIndex, gradOutputs);   // e.g. activation caches with Gradients
            if (InputIndex is null)
            {
                var none = new Tensor?[InputCount];
                foreach (var entry in _full)
                {
                    var result = ((FullBackwardHook)entry.Fn)(_module, none, gradOutputs);
                    if (result is not null)
                        foreach (var g in result)
                            if (g is not null)
                                throw new InvalidOperationException($"Backward hook for Modules where no input requires gradient should always return None or None for all gradients (module '{_node.Path}', {_module.GetType().Name}: the hook returned a tensor).");
                }
            }
            else
            {
                // Kept for the input node, which runs in a later callback: the handles of this one are disposed by then.
                var kept = new Tensor?[gradOutputs.Length];
                for (int i = 0; i < kept.Length; i++) kept[i] = gradOutputs[i]?.alias();
                lock (_gate) _gradOutputs = kept;
            }
            return Gather(gradOutputs, OutputIndex!);
        }

        /// <summary>The input node's backward (PyTorch's <c>_set_user_hook</c>): full hooks, once every input gradient is in.</summary>
        private Tensor?[] InputBackward(Tensor?[] grads)
        {
            Tensor?[]? gradOutputs;
            lock (_gate) { gradOutputs = _gradOutputs; _gradOutputs = null; }
            // The gradient reached the inputs without passing through the outputs (e.g. a second backward): no firing.
            if (gradOutputs is null) return grads;
            foreach (var g in gradOutputs) Pending.Add(g);
            if (BackwardHookFailures.HasPending) return grads;
            var gradInputs = Spread(grads, InputIndex!, InputCount);
            if (_zeroInputs is not null)
                foreach (var (position, shape, dtype, device) in _zeroInputs)
                {
                    var zeros = torch.zeros(shape, dtype, device);
                    Pending.Add(zeros);
                    gradInputs[position] = zeros;
                }
            foreach (var entry in _full)
            {
                if (((FullBackwardHook)entry.Fn)(_module, gradInputs, gradOutputs) is { } replaced)
                {
                    if (replaced.Count != gradInputs.Length)
                        throw new InvalidOperationException($"Backward hook returned an invalid number of grad_input, got {replaced.Count}, but expected {gradInputs.Length} (module '{_node.Path}', {_module.GetType().Name}).");
                    gradInputs = Copy(replaced);
                }
            }
            if (_observed && _backwardStart != 0)
                BackwardEvents.Backward(_node, _callIndex, _backwardStart, Stopwatch.GetTimestamp(), gradInputs, gradOutputs);
            return Gather(gradInputs, InputIndex!);
        }

        private static Tensor?[] Spread(Tensor?[] grads, int[] index, int count)
        {
            var all = new Tensor?[count];
            for (int i = 0; i < index.Length; i++) all[index[i]] = grads[i];
            return all;
        }

        private static Tensor?[] Gather(Tensor?[] all, int[] index)
        {
            var grads = new Tensor?[index.Length];
            for (int i = 0; i < index.Length; i++) grads[i] = all[index[i]];
            return grads;
        }

        private static Tensor?[] Copy(IReadOnlyList<Tensor?> list)
        {
            var copy = new Tensor?[list.Count];
            for (int i = 0; i < copy.Length; i++) { copy[i] = list[i]; Pending.Add(list[i]); }
            return copy;
        }

        private static readonly ConditionalWeakTable<HookPoint, object> s_warned = new();

        /// <summary>PyTorch's warning for an output that is neither a tensor nor a tuple (once per module).</summary>
        public static void WarnNotTensorOutput(HookPoint node, Type output)
        {
            if (s_warned.TryGetValue(node, out _)) return;
            s_warned.AddOrUpdate(node, output);
            Trace.TraceWarning($"TorchHooks: for backward hooks to be called, module output should be a Tensor or a tuple of Tensors; '{node.Path}' returns {Dispatchers.Name(output)}: its backward hooks will not fire.");
        }
    }
}
