using System;
using System.Collections.Generic;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// PyTorch's <c>BackwardHookFunction</c> (torch/nn/modules/_functions.py): an identity autograd function with
    /// N tensor inputs and N outputs — one autograd node. Forward returns its tensors as they are (libtorch makes
    /// them views, as in PyTorch); backward passes the gradients to <see cref="GradientSite.OnBackward"/>, which
    /// runs the hooks and may replace them.
    /// </summary>
    /// <remarks>
    /// TorchSharp facts this relies on (TorchSharp 0.107 <c>AutogradFunction.cs</c>, <c>THSAutograd.cpp</c>):
    /// <list type="bullet">
    /// <item>The function object is a process-wide singleton: per-call state travels as the first, non-tensor
    /// argument (a <see cref="GradientSite"/>), saved with <c>ctx.save_data</c>; backward returns <c>null</c> at
    /// that position.</item>
    /// <item><c>set_materialize_grads(false)</c>: an output whose gradient is undefined (unused) arrives as an
    /// invalid tensor — PyTorch's <c>None</c> — instead of <c>zeros_like</c> of a cached tensor that a
    /// <c>DisposeScope</c> around the forward may have disposed (that aborts the process).</item>
    /// <item>An exception escaping backward crosses a reverse P/Invoke and aborts the process: the site never
    /// throws (hook exceptions are stashed, see <see cref="BackwardHookFailures"/>).</item>
    /// <item>The gradients handed to backward, and the ones it returns, are managed handles that libtorch copies
    /// after backward returns: they are disposed on this thread's next callback (<see cref="Pending"/>).</item>
    /// </list>
    /// Only tensors that require grad are routed through it: a non-requires-grad tensor would come out requiring
    /// grad (TorchSharp's <c>mark_non_differentiable</c> path has a pinning bug), unlike PyTorch.
    /// </remarks>
    internal sealed class BackwardHookFunction : torch.autograd.MultiTensorFunction<BackwardHookFunction>
    {
        private const string SiteKey = "site";

        public override string Name => "BackwardHookFunctionBackward";

        /// <summary>Routes <paramref name="tensors"/> through one identity node whose backward calls <paramref name="site"/>.</summary>
        public static List<Tensor> Wrap(GradientSite site, List<Tensor> tensors)
        {
            var vars = new object[tensors.Count + 1];
            vars[0] = site;
            for (int i = 0; i < tensors.Count; i++) vars[i + 1] = tensors[i];
            return apply(vars);
        }

        public override List<Tensor> forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data(SiteKey, vars[0]);
            ctx.set_materialize_grads(false);
            var outputs = new List<Tensor>(vars.Length - 1);
            for (int i = 1; i < vars.Length; i++) outputs.Add((Tensor)vars[i]);
            return outputs;
        }

        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, List<Tensor> grad_outputs)
        {
            Pending.Enter();
            var result = new List<Tensor>(grad_outputs.Count + 1) { null! };
            try
            {
                var site = (GradientSite)ctx.get_data(SiteKey);
                var grads = new Tensor?[grad_outputs.Count];
                for (int i = 0; i < grads.Length; i++)
                {
                    var g = grad_outputs[i];
                    Pending.Add(g);
                    grads[i] = g is null || g.IsInvalid ? null : g;
                }
                var back = site.OnBackward(grads);
                for (int i = 0; i < back.Length; i++)
                {
                    if (back[i] is { } t) Pending.Add(t);
                    result.Add(back[i]!);
                }
            }
            catch (Exception e)
            {
                string where = "?";
                try { where = ((GradientSite)ctx.get_data(SiteKey)).Where; } catch (Exception) { }
                // Never let an exception reach libtorch (process abort): keep the gradients as they came.
                BackwardHookFailures.Stash(e, where);
                result.RemoveRange(1, result.Count - 1);
                foreach (var g in grad_outputs) result.Add(g is null || g.IsInvalid ? null! : g);
            }
            finally { Pending.Exit(); }
            return result;
        }
    }

    /// <summary>
    /// One place in the graph where gradients pass through a <see cref="BackwardHookFunction"/> node: a module call's
    /// input or output side, or a tensor's gradient hook. Receives the gradients (null = undefined, PyTorch's None)
    /// and returns the ones that flow on, one per wrapped tensor. Implementations never throw on purpose, but
    /// <see cref="BackwardHookFunction"/> catches anyway.
    /// </summary>
    internal abstract class GradientSite
    {
        public abstract Tensor?[] OnBackward(Tensor?[] grads);

        /// <summary>Names the hook's place for an exception it threw (<c>Data["TorchHooks.BackwardHook"]</c>).</summary>
        public abstract string Where { get; }
    }

    /// <summary>
    /// Gradient handles from backward callbacks that libtorch copies only after the callback returns. A callback
    /// disposes the ones left by earlier callbacks of its thread (copied by then); the last ones are disposed by
    /// <see cref="BackwardHooks.Backward"/>, by the next hooked forward on the thread, or by the next callback.
    /// So a training loop's live-tensor count stays flat.
    /// </summary>
    internal static class Pending
    {
        [ThreadStatic] private static List<Tensor>? t_tensors;
        [ThreadStatic] private static int t_depth;

        /// <summary>Whether handles wait on this thread.</summary>
        public static bool Any => t_tensors is { Count: > 0 };

        /// <summary>A callback begins: dispose what earlier callbacks left (unless one is still running: a hook that runs a backward).</summary>
        public static void Enter()
        {
            if (t_depth++ == 0) DisposeAll();
        }

        public static void Exit() => t_depth--;

        public static void Add(Tensor? t)
        {
            if (t is not null) (t_tensors ??= new List<Tensor>()).Add(t);
        }

        /// <summary>Disposes every handle kept on this thread, unless a callback is running on it.</summary>
        public static void DisposeAll()
        {
            var list = t_tensors;
            if (list is null || list.Count == 0 || t_depth > 1) return;
            t_tensors = null;
            var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
            foreach (var t in list)
                if (seen.Add(t)) t.Dispose();
        }
    }
}
