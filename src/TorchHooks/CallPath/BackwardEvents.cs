using System;
using System.Threading;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Something that watches the backward passes through module calls — the gradients w.r.t. a call's outputs, and
    /// when its backward began and ended — through the seam's observer route (<see cref="BackwardEvents"/>). A
    /// concern that needs them (tracing: backward timings, gradient caches) subscribes one; it never names the
    /// concern that produces them.
    /// </summary>
    internal abstract class BackwardObserver
    {
        /// <summary>Whether the observer wants the backward of calls of <paramref name="node"/>'s module (asked when a call begins).</summary>
        public abstract bool Wants(HookPoint node);

        /// <summary>The gradients w.r.t. the outputs of a call of <paramref name="node"/>'s module reached it in backward (after its backward pre-hooks; null: None). Valid during the call only.</summary>
        public virtual void Gradients(HookPoint node, int callIndex, Tensor?[] gradOutputs) { }

        /// <summary>
        /// A backward pass through a call of <paramref name="node"/>'s module: from <paramref name="startTimestamp"/> (its
        /// output-gradient node ran) to <paramref name="endTimestamp"/> (its input-gradient node ran), <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>
        /// values, on the calling (backward) thread. The gradients are valid during the call only.
        /// </summary>
        public virtual void Backward(HookPoint node, int callIndex, long startTimestamp, long endTimestamp, Tensor?[]? gradInputs, Tensor?[]? gradOutputs) { }
    }

    /// <summary>
    /// The seam's observer route for backward passes through module calls: observers subscribe
    /// (<see cref="Add"/>); the concern that routes module calls through an autograd node (the backward-hooks
    /// concern) asks <see cref="Requested"/> / <see cref="Wants"/> when a call begins and publishes
    /// <see cref="Gradients"/> and <see cref="Backward"/> from backward. Copy-on-write: publishing reads one array.
    /// </summary>
    internal static class BackwardEvents
    {
        private static readonly ObserverList<BackwardObserver> s_observers = new();

        /// <summary>Whether any observer is subscribed (then the producing concern is active everywhere).</summary>
        public static bool Requested => s_observers.Items.Length > 0;

        /// <summary>Subscribes <paramref name="observer"/> (once; adding it again does nothing).</summary>
        public static void Add(BackwardObserver observer)
        {
            if (!s_observers.Add(observer)) return;
            CallPath.RecomputeEverywhere();
        }

        /// <summary>Unsubscribes <paramref name="observer"/> (nothing if it was not subscribed).</summary>
        public static void Remove(BackwardObserver observer)
        {
            if (!s_observers.Remove(observer)) return;
            CallPath.RecomputeEverywhere();
        }

        /// <summary>Whether some observer wants the backward of calls of <paramref name="node"/>'s module.</summary>
        public static bool Wants(HookPoint node)
        {
            foreach (var o in s_observers.Items)
                if (o.Wants(node)) return true;
            return false;
        }

        /// <summary>Publishes a call's gradients w.r.t. its outputs to the observers that want its module.</summary>
        public static void Gradients(HookPoint node, int callIndex, Tensor?[] gradOutputs)
        {
            foreach (var o in s_observers.Items)
                if (o.Wants(node)) o.Gradients(node, callIndex, gradOutputs);
        }

        /// <summary>Publishes a backward pass through a call to the observers that want its module.</summary>
        public static void Backward(HookPoint node, int callIndex, long startTimestamp, long endTimestamp, Tensor?[]? gradInputs, Tensor?[]? gradOutputs)
        {
            foreach (var o in s_observers.Items)
                if (o.Wants(node)) o.Backward(node, callIndex, startTimestamp, endTimestamp, gradInputs, gradOutputs);
        }
    }
}
