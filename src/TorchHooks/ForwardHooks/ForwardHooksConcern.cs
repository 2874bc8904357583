using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The forward-hooks concern of the call path: forward pre-hooks on the way in, forward hooks on the way
    /// out, and the always_call forward hooks when the call fails — global hooks (<see cref="ModuleHooks"/>)
    /// before the module's own (<see cref="HookPoint.register_forward_hook(ForwardHook{torch.Tensor, torch.Tensor}, bool, bool)"/>).
    /// </summary>
    /// <remarks>
    /// Both lists are snapshotted when the call begins: hooks added or removed while it runs apply from the
    /// next call. A forward hook counts as started before it runs, so a hook that throws is never re-run.
    /// </remarks>
    internal sealed class ForwardHooksConcern : CallConcern
    {
        public static readonly ForwardHooksConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => node.ForwardPreSnapshot.Length > 0 || node.ForwardSnapshot.Length > 0;

        public override bool IsActiveEverywhere => ModuleHooks.ForwardPre.Count > 0 || ModuleHooks.Forward.Count > 0;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>Per call: the forward hooks as they were when it began, how many have started, the input after the pre-hooks.</summary>
        private sealed class State : CallState
        {
            // Null when empty: writing null costs no GC write barrier, and most calls have no global hooks.
            public HookEntry[]? Global;
            public HookEntry[]? Local;
            public int Started;
            public object? Args;

            public override void Clear()
            {
                Global = Local = null;
                Started = 0;
                Args = null;
            }

            public static HookEntry[]? OrNull(HookEntry[] snapshot) => snapshot.Length == 0 ? null : snapshot;
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            /// <summary>Forward pre-hooks: global first, then local. A non-null result replaces the input.</summary>
            public override void In(CallFrame frame, ref TArgs args)
            {
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                var node = frame.Node;
                var module = frame.Module;
                state.Global = State.OrNull(ModuleHooks.Forward.Snapshot);
                state.Local = State.OrNull(node.ForwardSnapshot);
                // The input is kept only for the forward hooks that may run on failure (none: no GC write barrier).
                bool keep = state.Global is not null || state.Local is not null;
                if (keep) state.Args = args;

                var global = ModuleHooks.ForwardPre.Snapshot;
                for (int i = 0; i < global.Length; i++)
                {
                    if (global[i].Fn is ForwardPreHook<TArgs> hook && hook(module, args) is { } replaced)
                    {
                        args = Replaced(frame, replaced.Value, "global forward pre-hook", i, "input");
                        if (keep) state.Args = args;
                    }
                }
                var local = node.ForwardPreSnapshot;
                for (int i = 0; i < local.Length; i++)
                {
                    if (Unsafe.As<ForwardPreHook<TArgs>>(local[i].Fn)(module, args) is { } replaced)   // typed when registered
                    {
                        args = Replaced(frame, replaced.Value, "forward pre-hook", i, "input");
                        if (keep) state.Args = args;
                    }
                }
            }

            /// <summary>Forward hooks: global, then local. A non-null result replaces the output.</summary>
            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                var global = state.Global ?? Array.Empty<HookEntry>();
                var local = state.Local ?? Array.Empty<HookEntry>();
                var module = frame.Module;
                while (state.Started < global.Length + local.Length)
                {
                    int i = state.Started++;
                    // Local hooks were type-checked when registered; global ones apply to the signatures they fit.
                    var hook = i < global.Length ? global[i].Fn as ForwardHook<TArgs, TResult> : Unsafe.As<ForwardHook<TArgs, TResult>>(local[i - global.Length].Fn);
                    if (hook is not null && hook(module, args, result) is { } replaced)
                        result = i < global.Length
                            ? Replaced(frame, replaced.Value, "global forward hook", i, "output")
                            : Replaced(frame, replaced.Value, "forward hook", i - global.Length, "output");
                }
            }

            /// <summary>
            /// A hook returned <paramref name="value"/> in place of the module's input or output: a disposed tensor is
            /// rejected here, naming the hook (it would fail later as libtorch's "Tensor invalid -- empty handle");
            /// otherwise it is remembered for the message if libtorch rejects it later in this facade call.
            /// </summary>
            private static T Replaced<T>(CallFrame frame, T value, string kind, int index, string what)
            {
                if (value is torch.Tensor { IsInvalid: true } || (value is System.Runtime.CompilerServices.ITuple tuple && HasDisposed(tuple)))
                    throw new ObjectDisposedException("Tensor",
                        $"The {kind} #{index} of module '{frame.Node.Path}' ({frame.Module.GetType().Name}) returned a disposed tensor as the module's {what}. " +
                        "Return a live tensor (a new result, or x.alias()); a tensor in a 'using' inside the hook is disposed when the hook returns.");
                var stack = CallStack.Current;
                if (stack.FacadeDepth > 0) stack.LastReplacement = new Replacement(frame.Node, $"{kind} #{index}", what, value);
                return value;
            }

            private static bool HasDisposed(System.Runtime.CompilerServices.ITuple tuple)
            {
                for (int i = 0; i < tuple.Length; i++)
                    if (tuple[i] is torch.Tensor { IsInvalid: true }) return true;
                return false;
            }

            /// <summary>The always_call forward hooks that have not started yet run, with a null (default) output.</summary>
            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                var args = state.Args is TArgs a ? a : default!;
                var global = state.Global ?? Array.Empty<HookEntry>();
                var local = state.Local ?? Array.Empty<HookEntry>();
                while (state.Started < global.Length + local.Length)
                {
                    int i = state.Started++;
                    var entry = i < global.Length ? global[i] : local[i - global.Length];
                    if (!entry.AlwaysCall || entry.Fn is not ForwardHook<TArgs, TResult> hook) continue;
                    try { hook(frame.Module, args, default!); }
                    catch (Exception e) { suppressed.Add(e); }
                }
            }
        }
    }
}
