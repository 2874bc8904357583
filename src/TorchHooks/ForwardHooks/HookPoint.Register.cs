using System;
using System.Threading;
using System.Collections.Generic;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    // The forward hooks' registration API on the per-module node (ModuleTree/HookPoint.cs); the call path's
    // forward-hook steps are in ForwardHooksConcern.cs.
    // The typed overloads for modules with 2–6 inputs are generated: src/TorchHooks.Generators/ArityFamilyGenerator.cs.
    public abstract partial class HookPoint
    {
        // Created on first registration (most modules never get a hook; wrapping stays cheap).
        private HookList? _forwardPre;
        private HookList? _forward;

        internal HookList ForwardPre => Volatile.Read(ref _forwardPre) ?? Interlocked.CompareExchange(ref _forwardPre, new HookList(Recompute), null) ?? _forwardPre!;
        internal HookList Forward => Volatile.Read(ref _forward) ?? Interlocked.CompareExchange(ref _forward, new HookList(Recompute), null) ?? _forward!;

        /// <summary>The forward pre-hooks now (empty if none was ever registered), without creating the list.</summary>
        internal HookEntry[] ForwardPreSnapshot => Volatile.Read(ref _forwardPre)?.Snapshot ?? Array.Empty<HookEntry>();

        /// <summary>The forward hooks now (empty if none was ever registered), without creating the list.</summary>
        internal HookEntry[] ForwardSnapshot => Volatile.Read(ref _forward)?.Snapshot ?? Array.Empty<HookEntry>();

        /// <summary>Number of local forward pre-hooks registered.</summary>
        public int ForwardPreHookCount => ForwardPreSnapshot.Length;

        /// <summary>Number of local forward hooks registered.</summary>
        public int ForwardHookCount => ForwardSnapshot.Length;

        private protected abstract RemovableHandle AddPre<TArgs>(ForwardPreHook<TArgs> hook, bool prepend, string shape);
        private protected abstract RemovableHandle AddForward<TArgs, TResult>(ForwardHook<TArgs, TResult> hook, bool prepend, bool alwaysCall, string shape);

        private protected static T NotNull<T>(T? hook) where T : class
            => hook ?? throw new ArgumentNullException(nameof(hook), "Pass a hook delegate, e.g. (m, x) => null.");

        // ---- forward pre-hooks: hook(module, inputs) → null (keep) or the replacement inputs ----

        /// <summary>
        /// Registers a forward pre-hook on a <c>Tensor → …</c> module: <c>hook(module, input)</c> runs before
        /// forward; return null to keep the input, or a tensor to replace it.
        /// </summary>
        /// <param name="hook">The hook.</param>
        /// <param name="prepend">Run before the hooks already registered here (global hooks still run first).</param>
        public RemovableHandle register_forward_pre_hook(ForwardPreHook<Tensor> hook, bool prepend = false)
            => AddPre(NotNull(hook), prepend, "(m, x) => ...");

        /// <summary>Registers a forward pre-hook on a module with one input of type <typeparamref name="T"/>.</summary>
        public RemovableHandle register_forward_pre_hook<T>(ForwardPreHook<T> hook, bool prepend = false)
            => AddPre(NotNull(hook), prepend, $"register_forward_pre_hook<{Dispatchers.Name(typeof(T))}>");

        // ---- forward hooks: hook(module, inputs, output) → null (keep) or the replacement output ----

        /// <summary>
        /// Registers a forward hook on a <c>Tensor → Tensor</c> module: <c>hook(module, input, output)</c> runs
        /// after forward (seeing the input after pre-hooks); return null to keep the output or a tensor to
        /// replace it.
        /// </summary>
        /// <param name="hook">The hook.</param>
        /// <param name="prepend">Run before the hooks already registered here (global hooks still run first).</param>
        /// <param name="always_call">Also run when forward or another hook throws (then with a null output);
        /// its own exception is then reported, not thrown, and the original exception propagates.</param>
        public RemovableHandle register_forward_hook(ForwardHook<Tensor, Tensor> hook, bool prepend = false, bool always_call = false)
            => AddForward(NotNull(hook), prepend, always_call, "(m, x, y) => ...");

        /// <summary>Registers a forward hook on a module with one input <typeparamref name="T"/> and output <typeparamref name="TResult"/>.</summary>
        public RemovableHandle register_forward_hook<T, TResult>(ForwardHook<T, TResult> hook, bool prepend = false, bool always_call = false)
            => AddForward(NotNull(hook), prepend, always_call, $"register_forward_hook<{Dispatchers.Name(typeof(T))}, {Dispatchers.Name(typeof(TResult))}>");

    }

    internal sealed partial class SignatureNode<TArgs, TResult>
    {
        private protected override RemovableHandle AddPre<TA>(ForwardPreHook<TA> hook, bool prepend, string shape)
        {
            if (hook is not ForwardPreHook<TArgs>)
                throw Mismatch("forward pre-hook", shape, Dispatchers.Name(typeof(TA)));
            return ForwardPre.Add(hook, prepend, alwaysCall: false);
        }

        private protected override RemovableHandle AddForward<TA, TR>(ForwardHook<TA, TR> hook, bool prepend, bool alwaysCall, string shape)
        {
            if (hook is not ForwardHook<TArgs, TResult>)
                throw Mismatch("forward hook", shape, $"{Dispatchers.Name(typeof(TA))} → {Dispatchers.Name(typeof(TR))}");
            return Forward.Add(hook, prepend, alwaysCall);
        }

        private ArgumentException Mismatch(string kind, string shape, string given)
            => new($"The {kind} ({shape}, for {given}) does not fit module '{Path}' ({Module.GetType().Name}), which is a {Signature}. " +
                   $"Register a hook of that signature: get the module's typed hook point with m.At(module) (the lambda then takes its types from the module), or give explicit type arguments matching {Signature}.", "hook");
    }
}
