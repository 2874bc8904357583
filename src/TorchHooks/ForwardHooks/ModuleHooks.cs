using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Global hooks, like PyTorch's <c>torch.nn.modules.module.register_module_forward_*_hook</c>: they run
    /// for every module call that reaches TorchHooks' call path — every module of every tree wrapped
    /// with <see cref="ModuleExtensions.WithHooks{T,TResult}(torch.nn.Module{T,TResult})"/> in this process,
    /// on every thread — before the module's own hooks.
    /// </summary>
    /// <remarks>
    /// A global hook is typed by the input it accepts: it runs for the modules whose input type is
    /// <c>TArgs</c> (for a module with several inputs, the tuple of them, e.g. <c>(Tensor, Tensor)</c>),
    /// and is skipped for others. Modules never wrapped are not reached (TorchSharp has no global hook).
    /// </remarks>
    public static partial class ModuleHooks
    {
        internal static readonly HookList ForwardPre = HookList.Global("forward pre-hooks", 100);
        internal static readonly HookList Forward = HookList.Global("forward hooks", 200);

        /// <summary>
        /// The handles of every registered global hook, of every kind (forward pre-hooks, forward hooks, backward pre-hooks, full
        /// backward hooks, ..., each in registration order): a global hook whose handle was lost can still be found and removed.
        /// </summary>
        public static IReadOnlyList<RemovableHandle> Handles
        {
            get
            {
                RuntimeHelpers.RunClassConstructor(typeof(ModuleHooks).TypeHandle);   // every kind's list is made (they register themselves)
                return HookList.GlobalHandles();
            }
        }

        /// <summary>Removes every global hook (PyTorch keeps them in module-level dicts one clears by hand). Returns how many were removed.</summary>
        public static int RemoveAll()
        {
            var handles = Handles;
            foreach (var h in handles) h.remove();
            return handles.Count;
        }

        /// <summary>Registers a global forward pre-hook for every <c>Tensor → …</c> module. Return null to keep the input, a tensor to replace it.</summary>
        public static RemovableHandle register_module_forward_pre_hook(ForwardPreHook<Tensor> hook)
            => ForwardPre.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>Registers a global forward pre-hook for every module whose input (tuple of inputs) is <typeparamref name="TArgs"/>.</summary>
        public static RemovableHandle register_module_forward_pre_hook<TArgs>(ForwardPreHook<TArgs> hook)
            => ForwardPre.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>
        /// Registers a global forward hook for every <c>Tensor → Tensor</c> module. Return null to keep the
        /// output, a tensor to replace it. With <paramref name="always_call"/> it also runs (with a null
        /// output) when the call throws.
        /// </summary>
        public static RemovableHandle register_module_forward_hook(ForwardHook<Tensor, Tensor> hook, bool always_call = false)
            => Forward.Add(hook, prepend: false, always_call);

        /// <summary>Registers a global forward hook for every module with input <typeparamref name="TArgs"/> and output <typeparamref name="TResult"/>.</summary>
        public static RemovableHandle register_module_forward_hook<TArgs, TResult>(ForwardHook<TArgs, TResult> hook, bool always_call = false)
            => Forward.Add(hook, prepend: false, always_call);
    }
}
