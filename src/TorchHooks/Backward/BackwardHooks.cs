using System;
using System.Runtime.ExceptionServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Backward with TorchHooks' hooks: <see cref="Backward"/> runs <c>tensor.backward(...)</c> and then throws the
    /// exception a backward hook threw during it — the closest C# gets to PyTorch, where the exception comes out of
    /// <c>backward()</c>.
    /// </summary>
    /// <remarks>
    /// <para>Hooks run inside libtorch's autograd engine, called back through TorchSharp; an exception crossing
    /// that boundary would abort the process. So TorchHooks catches it, and from then on until it is delivered no
    /// backward hook of that model runs on that thread and gradients flow through unchanged (PyTorch would stop the
    /// backward pass: the parameters' <c>.grad</c> are then partly accumulated too). A failure belongs to its own pass:
    /// other threads' passes and other models' hooks are not affected. The exception is delivered:</para>
    /// <list type="number">
    /// <item>by <see cref="Backward"/> right after the backward pass — the original exception object, rethrown with
    /// its own stack trace (<see cref="ExceptionDispatchInfo"/>); <c>Data["TorchHooks.BackwardHook"]</c> names the module;</item>
    /// <item>after a plain <c>loss.backward()</c>, by the next forward of a module with backward hooks of the same model: a
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
            // This pass's failures only: one left by an earlier plain backward() waits for its model's next hooked call.
            int mark = BackwardHookFailures.Mark;
            try
            {
                if (gradient is null) tensor.backward(retain_graph: retain_graph, create_graph: create_graph);
                else tensor.backward(new[] { gradient }, retain_graph: retain_graph, create_graph: create_graph);
            }
            finally { PendingGradients.DisposeAll(); }
            if (BackwardHookFailures.TakeSince(mark) is { } failure) ExceptionDispatchInfo.Capture(failure).Throw();
        }

        /// <summary>Throws (as <see cref="Backward"/> does) the exception a backward hook threw on this thread since it was last delivered; does nothing otherwise.</summary>
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
            var result = new Tensor[1];
            AutogradNode.Identity(new TensorGradSite(hook), new[] { tensor }, result);
            return result[0];
        }

        private sealed class TensorGradSite : GradientSite
        {
            private readonly Func<Tensor, Tensor?> _hook;
            public TensorGradSite(Func<Tensor, Tensor?> hook) { _hook = hook; }

            public override string Where => "a tensor gradient hook (WithGradHook)";

            public override Tensor?[] OnBackward(Tensor?[] grads)
            {
                if (BackwardHookFailures.HasPendingFor(null) || grads[0] is not { } g) return grads;
                if (_hook(g) is { } replaced)
                {
                    PendingGradients.Add(replaced);
                    return new[] { replaced };
                }
                return grads;
            }
        }
    }
}
