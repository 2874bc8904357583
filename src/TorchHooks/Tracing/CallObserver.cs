using System;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Something that watches module calls through the tracing concern: an <see cref="ActivationCache"/>
    /// (tracers have their own allocation-free steps). Holds no reference to any model (the call path hands it the frame).
    /// </summary>
    internal abstract class CallObserver
    {
        /// <summary>Whether calls of <paramref name="node"/>'s module are recorded.</summary>
        public abstract bool Wants(HookPoint node);

        /// <summary>A call begins; returns the observer's token for it (null: not recorded).</summary>
        public abstract object? Begin(CallFrame frame, object? args, object? parentToken, long timestamp);

        /// <summary>The call with <paramref name="token"/> ended (<paramref name="failed"/>: it threw; args and result are null then).</summary>
        public abstract void End(object token, object? args, object? result, long timestamp, bool failed);

        /// <summary>Whether the observer wants the gradients w.r.t. the outputs of the modules it <see cref="Wants"/> (the backward concern then wraps them).</summary>
        public virtual bool CapturesGradients => false;

        /// <summary>The gradients w.r.t. the outputs of a call of <paramref name="node"/>'s module reached it in backward (null: None).</summary>
        public virtual void Gradients(HookPoint node, int callIndex, Tensor?[] gradOutputs) { }
    }
}
