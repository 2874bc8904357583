using System;
using System.Threading;

namespace TorchHooks
{
    // The backward hooks' registration on the per-module node (ModuleTree/HookPoint.cs); the call-path steps are in BackwardHooksConcern.cs.
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
}
