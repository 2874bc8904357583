using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The checkpointing concern of the call path — PyTorch 1.13's composable <c>checkpoint(module)</c>
    /// (torch/distributed/_composable/checkpoint_activation.py: a forward pre-hook that turns grad mode off and an
    /// always-call forward hook that routes the output through a custom autograd function), placed around the whole
    /// call like <c>checkpoint_wrapper</c>: on the way in, right after tracing, the inputs, the RNG state and the
    /// autocast state are kept and grad mode goes off (so neither forward nor the module's hooks record a graph); on the
    /// way out, right before tracing, grad mode comes back and the output goes through one <see cref="CheckpointFunction"/>
    /// node whose backward runs the call again with grad on and back-propagates through it.
    /// </summary>
    /// <remarks>
    /// Nothing happens when grad mode is off when the call begins (<c>no_grad</c>: nothing to save), when neither an
    /// input nor a parameter of the module requires grad (no graph would be recorded anyway), or for the call that is
    /// the recompute itself.
    /// </remarks>
    internal sealed class CheckpointConcern : CallConcern
    {
        public static readonly CheckpointConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => node.Checkpointing is not null;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>The module call about to run as a recompute on this thread (its checkpoint step stands aside once).</summary>
        [ThreadStatic] private static HookPoint? t_recomputing;

        /// <summary>Runs <paramref name="run"/> as the recompute of a call of <paramref name="node"/>'s module (calls begun meanwhile are recomputations).</summary>
        internal static object? Recompute(HookPoint node, Func<object?> run)
        {
            var stack = CallStack.Current;
            var outer = t_recomputing;
            t_recomputing = node;
            stack.Recomputing++;
            try { return run(); }
            finally
            {
                stack.Recomputing--;
                t_recomputing = outer;
            }
        }

        /// <summary>Per call: what the recompute needs, and the grad-mode scope open during the call.</summary>
        private sealed class State : CallState
        {
            public CheckpointCall? Call;
            public IDisposable? NoGrad;

            public override void Clear() { Call = null; NoGrad = null; }

            public void CloseNoGrad()
            {
                var scope = NoGrad;
                NoGrad = null;
                scope?.Dispose();
            }
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            private static readonly Func<HookPoint, object?[], object?> s_run = (node, items) => CheckpointCall.Invoke<TArgs, TResult>(node.Module, items);

            public override void In(CallFrame frame, ref TArgs args)
            {
                if (frame.Node.Checkpointing is not { } options) return;
                if (ReferenceEquals(t_recomputing, frame.Node) && frame.IsRecomputation)
                {
                    t_recomputing = null;   // this call is the recompute: it runs with grad on, and records its graph
                    return;
                }
                if (!torch.is_grad_enabled()) return;
                var items = CheckpointCall.Items(args);
                if (!CheckpointCall.NeedsGraph(items, frame.Module)) return;
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                state.Call = new CheckpointCall(frame.Node, options, items, s_run);
                state.NoGrad = torch.no_grad();
            }

            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { NoGrad: not null, Call: { } call } state) return;
                state.CloseNoGrad();
                state.Call = null;
                result = call.Wrap(result);
            }

            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                try { state.CloseNoGrad(); }
                catch (Exception e) { suppressed.Add(e); }
                try { state.Call?.Abandon(); }
                catch (Exception e) { suppressed.Add(e); }
                state.Call = null;
            }
        }
    }
}
