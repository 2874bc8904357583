using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A full backward hook, PyTorch's <c>hook(module, grad_input, grad_output) -&gt; tuple(Tensor) or None</c>:
    /// runs once per module call per backward, after every gradient w.r.t. the module's inputs is computed.
    /// <paramref name="grad_input"/> has one entry per input (positional argument) and <paramref name="grad_output"/>
    /// one per output (tuple element); <c>null</c> where PyTorch has <c>None</c> (a non-tensor, a tensor that needs
    /// no grad, an unused output). Return <c>null</c> to keep grad_input, or a list of the same length to replace it.
    /// </summary>
    /// <remarks>The tensors in the lists, and a replacement list's tensors, are valid during the hook only
    /// (TorchHooks disposes them once libtorch has taken them): keep one with <c>.detach().clone()</c>.</remarks>
    public delegate IReadOnlyList<Tensor?>? FullBackwardHook(torch.nn.Module module, IReadOnlyList<Tensor?> grad_input, IReadOnlyList<Tensor?> grad_output);

    /// <summary>
    /// A backward pre-hook, PyTorch's <c>hook(module, grad_output) -&gt; tuple[Tensor] or None</c>: runs when the
    /// gradients w.r.t. the module's outputs are computed, before the full backward hooks. Return <c>null</c> to keep
    /// grad_output, or a list of the same length to replace it (the module and its full hooks then see the replacement).
    /// </summary>
    /// <remarks>The tensors are valid during the hook only: keep one with <c>.detach().clone()</c>.</remarks>
    public delegate IReadOnlyList<Tensor?>? BackwardPreHook(torch.nn.Module module, IReadOnlyList<Tensor?> grad_output);

    // The backward hooks' registration on the per-module node (Tree/HookPoint.cs); the call-path steps are in BackwardHooksConcern.cs.
    public abstract partial class HookPoint
    {
        private HookList? _backwardPre;
        private HookList? _backward;

        internal HookList BackwardPre => _backwardPre ?? Interlocked.CompareExchange(ref _backwardPre, new HookList(Recompute), null) ?? _backwardPre!;
        internal HookList Backward => _backward ?? Interlocked.CompareExchange(ref _backward, new HookList(Recompute), null) ?? _backward!;

        /// <summary>Number of local full backward hooks registered.</summary>
        public int BackwardHookCount => _backward?.Count ?? 0;

        /// <summary>Number of local backward pre-hooks registered.</summary>
        public int BackwardPreHookCount => _backwardPre?.Count ?? 0;

        /// <summary>
        /// PyTorch's <c>register_full_backward_hook</c>: <c>hook(module, grad_input, grad_output)</c> runs once per call
        /// of this module per backward, after the gradients w.r.t. its inputs are computed; return <c>null</c> or a
        /// replacement grad_input of the same length. If no input requires grad it runs when grad_output is computed,
        /// with an all-null grad_input, and must return null. Works for modules of any signature. Exceptions thrown
        /// by the hook are delivered after backward: see <see cref="BackwardHooks.Backward"/>.
        /// </summary>
        /// <param name="hook">The hook.</param>
        /// <param name="prepend">Run before the full backward hooks already registered here (global hooks still run first).</param>
        public RemovableHandle register_full_backward_hook(FullBackwardHook hook, bool prepend = false)
            => Backward.Add(NotNull(hook), prepend, alwaysCall: false);

        /// <summary>
        /// PyTorch's <c>register_full_backward_pre_hook</c>: <c>hook(module, grad_output)</c> runs when the gradients
        /// w.r.t. this module's outputs are computed, before the full backward hooks; return <c>null</c> or a
        /// replacement grad_output of the same length.
        /// </summary>
        /// <param name="hook">The hook.</param>
        /// <param name="prepend">Run before the backward pre-hooks already registered here (global hooks still run first).</param>
        public RemovableHandle register_full_backward_pre_hook(BackwardPreHook hook, bool prepend = false)
            => BackwardPre.Add(NotNull(hook), prepend, alwaysCall: false);
    }

    // Global backward hooks (PyTorch's torch.nn.modules.module.register_module_full_backward_*_hook).
    public static partial class ModuleHooks
    {
        internal static readonly HookList BackwardPre = HookList.Global("backward pre-hooks", 300);
        internal static readonly HookList Backward = HookList.Global("full backward hooks", 400);

        /// <summary>
        /// Registers a global full backward hook: it runs for every module call of every wrapped tree, whatever the
        /// module's signature, before the module's own full backward hooks. See <see cref="HookPoint.register_full_backward_hook"/>.
        /// </summary>
        public static RemovableHandle register_module_full_backward_hook(FullBackwardHook hook)
            => Backward.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>
        /// Registers a global backward pre-hook: it runs for every module call of every wrapped tree, before the
        /// module's own backward pre-hooks. See <see cref="HookPoint.register_full_backward_pre_hook"/>.
        /// </summary>
        public static RemovableHandle register_module_full_backward_pre_hook(BackwardPreHook hook)
            => BackwardPre.Add(hook, prepend: false, alwaysCall: false);
    }

    // Backward-hook registration on a facade: the wrapped model's own hook point, for facades of every arity.
    public static partial class ModuleExtensions
    {
        /// <summary>Registers a full backward hook on the wrapped model (its root module). See <see cref="HookPoint.register_full_backward_hook"/>.</summary>
        public static RemovableHandle register_full_backward_hook(this IHookedModule model, FullBackwardHook hook, bool prepend = false)
            => (model ?? throw new ArgumentNullException(nameof(model), "Call register_full_backward_hook on a facade from WithHooks().")).Root.register_full_backward_hook(hook, prepend);

        /// <summary>Registers a backward pre-hook on the wrapped model (its root module). See <see cref="HookPoint.register_full_backward_pre_hook"/>.</summary>
        public static RemovableHandle register_full_backward_pre_hook(this IHookedModule model, BackwardPreHook hook, bool prepend = false)
            => (model ?? throw new ArgumentNullException(nameof(model), "Call register_full_backward_pre_hook on a facade from WithHooks().")).Root.register_full_backward_pre_hook(hook, prepend);
    }

    /// <summary>
    /// Backward with TorchHooks' hooks: <see cref="Backward"/> runs <c>tensor.backward(...)</c> and then throws the
    /// exception a backward hook threw during it — the closest C# gets to PyTorch, where the exception comes out of
    /// <c>backward()</c>.
    /// </summary>
    /// <remarks>
    /// <para>Hooks run inside libtorch's autograd engine, called back through TorchSharp; an exception crossing
    /// that boundary would abort the process. So TorchHooks catches it, and from then on until it is delivered no
    /// backward hook runs and gradients flow through unchanged (PyTorch would stop the backward pass: the
    /// parameters' <c>.grad</c> are then partly accumulated too). The exception is delivered:</para>
    /// <list type="number">
    /// <item>by <see cref="Backward"/> right after the backward pass — the original exception object, rethrown with
    /// its own stack trace (<see cref="ExceptionDispatchInfo"/>); <c>Data["TorchHooks.BackwardHook"]</c> names the module;</item>
    /// <item>after a plain <c>loss.backward()</c>, by the next forward of a module with backward hooks: a
    /// <see cref="BackwardHookException"/> whose <c>InnerException</c> is the original;</item>
    /// <item>or on demand by <see cref="ThrowIfFailed"/>.</item>
    /// </list>
    /// </remarks>
    public static class BackwardHooks
    {
        /// <summary>
        /// <c>tensor.backward(gradient, retain_graph, create_graph)</c>, then: if a backward hook threw during it,
        /// that exception is rethrown here (the original object; further ones are in its
        /// <c>Data["TorchHooks.SuppressedHookExceptions"]</c>). Also disposes the gradient handles of the last
        /// hook callbacks at once.
        /// </summary>
        public static void Backward(this Tensor tensor, Tensor? gradient = null, bool retain_graph = false, bool create_graph = false)
        {
            if (tensor is null) throw new ArgumentNullException(nameof(tensor), "Call Backward() on the loss tensor.");
            // A failure left over from an earlier plain backward() is delivered first, before more gradients accumulate.
            ThrowIfFailed();
            try
            {
                if (gradient is null) tensor.backward(retain_graph: retain_graph, create_graph: create_graph);
                else tensor.backward(new[] { gradient }, retain_graph: retain_graph, create_graph: create_graph);
            }
            finally { Pending.DisposeAll(); }
            if (BackwardHookFailures.Take() is { } failure) ExceptionDispatchInfo.Capture(failure).Throw();
        }

        /// <summary>Throws (as <see cref="Backward"/> does) the exception a backward hook threw since it was last delivered; does nothing otherwise.</summary>
        public static void ThrowIfFailed()
        {
            if (BackwardHookFailures.Take() is { } failure) ExceptionDispatchInfo.Capture(failure).Throw();
        }

        /// <summary>
        /// The closest equivalent of PyTorch's <c>tensor.register_hook(hook)</c>, which TorchSharp lacks: returns a new
        /// tensor, an identity view of <paramref name="tensor"/>, whose gradient passes through
        /// <paramref name="hook"/> (<c>hook(grad)</c> returns null to keep it, or a replacement). Use the returned
        /// tensor in place of the original — e.g. return it from a forward hook as the module's output.
        /// </summary>
        /// <remarks>
        /// Difference from PyTorch: the hook sees gradients that flow through the returned tensor only, not those
        /// reaching <paramref name="tensor"/> through other uses of it; there is no handle (stop using the returned
        /// tensor instead). If <paramref name="tensor"/> does not require grad, or grad mode is off, the hook would
        /// never fire, so this throws (PyTorch: "cannot register a hook on a tensor that doesn't require gradient").
        /// The gradient passed to the hook, and a replacement it returns, are valid during the hook only.
        /// </remarks>
        /// <exception cref="ArgumentException"><paramref name="tensor"/> does not require grad, or grad mode is off.</exception>
        public static Tensor WithGradHook(this Tensor tensor, Func<Tensor, Tensor?> hook)
        {
            if (tensor is null) throw new ArgumentNullException(nameof(tensor), "Pass the tensor whose gradient the hook should see.");
            if (hook is null) throw new ArgumentNullException(nameof(hook), "Pass a hook, e.g. g => null (observe) or g => g * 2 (replace).");
            if (!tensor.requires_grad)
                throw new ArgumentException("cannot register a hook on a tensor that doesn't require gradient: its gradient is never computed. Call requires_grad_() on it (a leaf), or hook a tensor computed from one that requires grad.", nameof(tensor));
            if (!torch.is_grad_enabled())
                throw new ArgumentException("Grad mode is off (inside no_grad()), so no gradient will flow through the hooked tensor. Call WithGradHook outside no_grad().", nameof(tensor));
            return BackwardHookFunction.Wrap(new TensorGradSite(hook), new List<Tensor> { tensor })[0];
        }

        private sealed class TensorGradSite : GradientSite
        {
            private readonly Func<Tensor, Tensor?> _hook;
            public TensorGradSite(Func<Tensor, Tensor?> hook) { _hook = hook; }

            public override string Where => "a tensor gradient hook (WithGradHook)";

            public override Tensor?[] OnBackward(Tensor?[] grads)
            {
                if (BackwardHookFailures.HasPending || grads[0] is not { } g) return grads;
                if (_hook(g) is { } replaced)
                {
                    Pending.Add(replaced);
                    return new[] { replaced };
                }
                return grads;
            }
        }
    }

    /// <summary>
    /// Thrown by the next forward of a module with backward hooks when a backward hook threw during an earlier plain
    /// <c>loss.backward()</c> (use <see cref="BackwardHooks.Backward"/> to get the exception right there).
    /// <see cref="Exception.InnerException"/> is the hook's original exception.
    /// </summary>
    public sealed class BackwardHookException : Exception
    {
        internal BackwardHookException(Exception inner)
            : base($"A backward hook threw during an earlier backward pass ({inner.GetType().Name}: {inner.Message}); the hooks were skipped from then on, and the gradients of that pass are not what the hooks would have made. " +
                   "Call loss.Backward() (TorchHooks) instead of loss.backward() to get the exception from the backward call itself.", inner) { }
    }

    /// <summary>Where exceptions thrown by backward hooks wait to be delivered (process-wide: libtorch may run backward on its own threads).</summary>
    internal static class BackwardHookFailures
    {
        public const string DataKey = "TorchHooks.BackwardHook";
        private static Exception? s_first;
        private static readonly List<Exception> s_more = new();
        private static readonly object s_gate = new();
        private static volatile bool s_pending;

        public static bool HasPending => s_pending;

        public static void Stash(Exception e, string where)
        {
            try { e.Data[DataKey] = where; }
            catch (Exception) { /* Data may be read-only: the exception still gets delivered */ }
            lock (s_gate)
            {
                if (s_first is null) s_first = e;
                else s_more.Add(e);
                s_pending = true;
            }
        }

        public static Exception? Take()
        {
            if (!s_pending) return null;
            lock (s_gate)
            {
                var first = s_first;
                s_first = null;
                s_pending = false;
                if (first is not null && s_more.Count > 0)
                {
                    try { first.Data[FailureReport.DataKey] = s_more.ToArray(); }
                    catch (Exception) { /* read-only Data */ }
                }
                s_more.Clear();
                return first;
            }
        }

        /// <summary>The way in of a module with backward hooks: a failure left by a plain <c>backward()</c> is thrown now.</summary>
        public static void ThrowPendingBeforeForward()
        {
            if (s_pending && Take() is { } e) throw new BackwardHookException(e);
        }
    }
}
