using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The call-path hooks concern (<see cref="ModelHook"/>, Accelerate's hooks): inside forward — after the forward
    /// pre-hooks and the backward input wrap, before the precision region opens — each attached hook's
    /// <c>pre_forward</c> in order (and <c>torch.no_grad()</c> if one asks); after forward, once the precision region
    /// has closed, each hook's <c>post_forward</c> in order, before the forward hooks; on failure, <c>forward_failed</c>
    /// of the hooks whose <c>pre_forward</c> returned and whose <c>post_forward</c> did not start.
    /// </summary>
    /// <remarks>
    /// Tensors: the inputs <c>pre_forward</c> made are disposed when the call ends (after <c>post_forward</c>, or on
    /// failure) unless they are in the output; an output <c>post_forward</c> replaced is disposed unless it is still in
    /// the output, among the inputs, or a parameter. Later way-out steps (the forward hooks) see the inputs as they were
    /// before <c>pre_forward</c>, as in PyTorch, where forward hooks get <c>_call_impl</c>'s arguments.
    /// </remarks>
    internal sealed class ModelHookConcern : CallConcern
    {
        public static readonly ModelHookConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => node.ModelHookChain.Length > 0;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>Per call: the hooks it began with, how far pre_forward and post_forward got, the no_grad scope.</summary>
        private sealed class State : CallState
        {
            public ModelHook[] Hooks = Array.Empty<ModelHook>();
            public int PreDone;
            public int PostStarted;
            public IDisposable? NoGrad;
            /// <summary>The inputs before pre_forward, and the tensors the pre_forwards made (set only when one replaced them).</summary>
            public object? ArgsBefore;
            public List<torch.Tensor>? Made;

            public override void Clear()
            {
                Hooks = Array.Empty<ModelHook>();
                PreDone = PostStarted = 0;
                NoGrad = null;
                ArgsBefore = null;
                Made = null;
            }

            /// <summary>A pre_forward replaced <paramref name="previous"/> with <paramref name="next"/>: notes the tensors it made.</summary>
            public void NoteMade(object? previous, object? next)
            {
                foreach (var t in CallHookValues.TensorsOf(next))
                    if (!CallHookValues.Holds(previous, t)) (Made ??= new()).Add(t);
            }

            /// <summary>Disposes the input tensors the pre_forwards made, except those in <paramref name="keep"/>.</summary>
            public void DisposeMade(object? keep)
            {
                var made = Made;
                Made = null;
                ArgsBefore = null;
                if (made is null) return;
                foreach (var t in made)
                    if (!CallHookValues.Holds(keep, t)) t.Dispose();
            }

            public void CloseNoGrad()
            {
                var scope = NoGrad;
                NoGrad = null;
                scope?.Dispose();
            }
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            public override void In(CallFrame frame, ref TArgs args)
            {
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                var hooks = frame.Node.ModelHookChain;
                state.Hooks = hooks;
                var module = frame.Module;
                var before = args;
                bool noGrad = false;
                for (int i = 0; i < hooks.Length; i++)
                {
                    var previous = args;
                    args = hooks[i].pre_forward(module, args);
                    state.PreDone = i + 1;
                    noGrad |= hooks[i].no_grad;
                    if (!CallHookValues.Same(previous, args))
                    {
                        state.ArgsBefore ??= before;   // kept only when replaced: no write barrier otherwise
                        state.NoteMade(previous, args);
                    }
                }
                if (noGrad) state.NoGrad = torch.no_grad();
            }

            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                state.CloseNoGrad();
                var hooks = state.Hooks;
                var module = frame.Module;
                while (state.PostStarted < state.PreDone)
                {
                    int i = state.PostStarted++;   // started before it runs: a post_forward that throws gets no forward_failed
                    var previous = result;
                    result = hooks[i].post_forward(module, result);
                    if (!CallHookValues.Same(previous, result)) CallHookValues.DisposeReplaced(previous, result, args, state.ArgsBefore);
                }
                if (state.ArgsBefore is TArgs before)
                {
                    args = before;                 // the forward hooks see the inputs as the pre-hooks left them
                    state.DisposeMade(result);
                }
            }

            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                try { state.CloseNoGrad(); }
                catch (Exception e) { suppressed.Add(e); }
                try { state.DisposeMade(null); }
                catch (Exception e) { suppressed.Add(e); }
                var hooks = state.Hooks;
                while (state.PostStarted < state.PreDone)
                {
                    int i = state.PostStarted++;
                    try { hooks[i].forward_failed(frame.Module); }
                    catch (Exception e) { suppressed.Add(e); }
                }
            }
        }
    }

    // The call-path hooks' place on the per-module node (ModuleTree/HookPoint.cs): the attached hooks and their registration.
    public abstract partial class HookPoint
    {
        private ModelHook[] _modelHooks = Array.Empty<ModelHook>();
        private static readonly object s_modelHookGate = new();   // attaching is rare: one lock for all nodes

        /// <summary>The attached call-path hooks, in order (a <see cref="SequentialHook"/> attached is listed as its hooks).</summary>
        internal ModelHook[] ModelHookChain => Volatile.Read(ref _modelHooks);

        /// <summary>
        /// Accelerate's <c>module._hf_hook</c>: the call-path hook attached to this module — null, the one hook, or a
        /// <see cref="SequentialHook"/> of the hooks attached with <c>append: true</c>, in order.
        /// </summary>
        public ModelHook? model_hook
        {
            get
            {
                var chain = ModelHookChain;
                return chain.Length switch { 0 => null, 1 => chain[0], _ => new SequentialHook(chain) };
            }
        }

        /// <summary>
        /// Accelerate's <c>add_hook_to_module(module, hook, append)</c>: puts <paramref name="hook"/> on this module's call
        /// path, inside forward (see <see cref="ModelHook"/> for the order). <see cref="ModelHook.init_hook"/> runs first;
        /// if it throws, nothing is attached. Without <paramref name="append"/> the hook replaces the hooks attached before
        /// (their <see cref="ModelHook.detach_hook"/> runs — Accelerate skips it, leaving what they set up behind); with it,
        /// the hook runs after them, as Accelerate's <c>SequentialHook(old_hook, hook)</c> (the earlier hooks stay attached
        /// as they are: Accelerate detaches and re-inits them). A <see cref="SequentialHook"/> is attached as its hooks.
        /// Removing the returned handle detaches exactly the hook(s) this call attached, if still attached.
        /// </summary>
        /// <param name="hook">The hook (a <see cref="ModelHook"/> subclass).</param>
        /// <param name="append">Run after the hooks already attached instead of replacing them.</param>
        public RemovableHandle add_hook_to_module(ModelHook hook, bool append = false)
        {
            if (hook is null) throw new ArgumentNullException(nameof(hook), "Pass a ModelHook subclass instance (override pre_forward / post_forward).");
            var added = hook is SequentialHook seq ? Flatten(seq) : new[] { hook };
            foreach (var h in added) h.init_hook(Module);
            ModelHook[] replaced;
            lock (s_modelHookGate)
            {
                var old = _modelHooks;
                replaced = append ? Array.Empty<ModelHook>() : old;
                var next = new ModelHook[(append ? old.Length : 0) + added.Length];
                if (append) old.CopyTo(next, 0);
                added.CopyTo(next, next.Length - added.Length);
                Volatile.Write(ref _modelHooks, next);
            }
            Recompute();
            Detach(replaced);
            return new RemovableHandle(_ => DetachExactly(added));
        }

        /// <summary>
        /// Accelerate's <c>remove_hook_from_module(module)</c>: detaches every call-path hook of this module
        /// (<see cref="ModelHook.detach_hook"/> of each, in order). Returns how many were attached. (Accelerate's
        /// <c>recurse</c>: <c>foreach (var p in m.HookPoints(p =&gt; p.Path.StartsWith(prefix))) p.remove_hook_from_module();</c>.)
        /// </summary>
        public int remove_hook_from_module()
        {
            ModelHook[] removed;
            lock (s_modelHookGate)
            {
                removed = _modelHooks;
                Volatile.Write(ref _modelHooks, Array.Empty<ModelHook>());
            }
            Recompute();
            Detach(removed);
            return removed.Length;
        }

        private void DetachExactly(ModelHook[] hooks)
        {
            var removed = new List<ModelHook>();
            lock (s_modelHookGate)
            {
                var next = new List<ModelHook>(_modelHooks);
                foreach (var h in hooks)
                {
                    int i = next.FindIndex(x => ReferenceEquals(x, h));
                    if (i < 0) continue;
                    next.RemoveAt(i);
                    removed.Add(h);
                }
                if (removed.Count == 0) return;
                Volatile.Write(ref _modelHooks, next.ToArray());
            }
            Recompute();
            Detach(removed.ToArray());
        }

        /// <summary>detach_hook of each (all run; the first exception propagates, the others in its Data).</summary>
        private void Detach(ModelHook[] hooks)
        {
            List<Exception>? errors = null;
            foreach (var h in hooks)
            {
                try { h.detach_hook(Module); }
                catch (Exception e) { (errors ??= new()).Add(e); }
            }
            if (errors is null) return;
            FailureReport.Warn(errors.GetRange(1, errors.Count - 1), errors[0]);
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(errors[0]).Throw();
        }

        private static ModelHook[] Flatten(SequentialHook seq)
        {
            var all = new List<ModelHook>();
            foreach (var h in seq.hooks)
                if (h is SequentialHook inner) all.AddRange(Flatten(inner));
                else all.Add(h);
            return all.ToArray();
        }
    }

    // Call-path hooks on a facade: the wrapped model's own hook point, for facades of every arity.
    public static partial class ModuleExtensions
    {
        /// <summary>Attaches a call-path hook to the wrapped model (its root module). See <see cref="HookPoint.add_hook_to_module"/>.</summary>
        public static RemovableHandle add_hook_to_module(this IHookedModule model, ModelHook hook, bool append = false)
            => (model ?? throw new ArgumentNullException(nameof(model), "Call add_hook_to_module on a facade from WithHooks().")).Root.add_hook_to_module(hook, append);
    }
}
