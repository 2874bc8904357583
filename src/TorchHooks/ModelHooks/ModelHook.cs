using System;
using System.Collections.Generic;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// A step of your own on the call path of selected modules — HuggingFace Accelerate's <c>ModelHook</c>
    /// (accelerate/hooks.py), the seam its device placement and offloading are built on. Subclass it, override what
    /// you need, and attach it with <see cref="HookPoint.add_hook_to_module"/>:
    /// <see cref="init_hook"/> when attached, <see cref="pre_forward{TArgs}"/> before the module's forward (may replace
    /// the inputs), <see cref="post_forward{TResult}"/> after it (may replace the output), <see cref="detach_hook"/>
    /// when removed, and — TorchHooks' addition — <see cref="forward_failed"/> when the call threw after
    /// <see cref="pre_forward{TArgs}"/> returned.
    /// </summary>
    /// <remarks>
    /// <para>Place in PyTorch's order: Accelerate's hooks run <em>inside</em> <c>forward</c> (they replace
    /// <c>module.forward</c>), so here too: forward pre-hooks → backward hooks' input wrap → <see cref="pre_forward{TArgs}"/>
    /// → (precision region) forward → <see cref="post_forward{TResult}"/> → forward hooks → backward hooks' output wrap.
    /// Forward pre-hooks see the inputs before <see cref="pre_forward{TArgs}"/>, forward hooks the output after
    /// <see cref="post_forward{TResult}"/> (and the inputs as the pre-hooks left them, as in PyTorch, where the forward
    /// hook gets <c>_call_impl</c>'s args, not the ones <c>new_forward</c> made).</para>
    /// <para>Typed by the module: <c>TArgs</c> in <see cref="pre_forward{TArgs}"/> is the module's input
    /// (<c>Tensor</c>, or a tuple such as <c>(Tensor, Tensor)</c> for several), <c>TResult</c> its output. One hook
    /// object may be attached to modules of any signature; <see cref="CallHookValues.MapTensors{T}"/> maps every tensor
    /// in an input or output, like Accelerate's <c>send_to_device</c>.</para>
    /// <para>Threads: a hook attached to a module runs on every thread that calls it, concurrently; keep per-call state
    /// in locals. Attaching and removing are safe from any thread while the model runs; a call under way keeps the
    /// hooks it began with.</para>
    /// <para>Failure: if <see cref="pre_forward{TArgs}"/>, forward or <see cref="post_forward{TResult}"/> throws, the
    /// exception propagates unchanged; every hook whose <see cref="pre_forward{TArgs}"/> returned and whose
    /// <see cref="post_forward{TResult}"/> did not start gets <see cref="forward_failed"/> (Accelerate has no such
    /// step: an offload hook would leave weights on the device). Exceptions from <see cref="forward_failed"/> are
    /// reported like those of always_call forward hooks (a trace warning, and the original exception's
    /// <c>Data["TorchHooks.SuppressedHookExceptions"]</c>), never thrown.</para>
    /// </remarks>
    public abstract class ModelHook
    {
        /// <summary>Accelerate's <c>no_grad</c>: when true, the module's forward runs under <c>torch.no_grad()</c> (between <see cref="pre_forward{TArgs}"/> and <see cref="post_forward{TResult}"/>).</summary>
        public virtual bool no_grad => false;

        /// <summary>
        /// Accelerate's <c>init_hook</c>: the hook is being attached to <paramref name="module"/> (e.g. move its weights).
        /// Unlike Accelerate it returns nothing: the module in the tree stays the same object. If it throws, the hook is not attached.
        /// </summary>
        public virtual void init_hook(torch.nn.Module module) { }

        /// <summary>Accelerate's <c>pre_forward</c>: runs right before the module's forward; return the inputs forward gets (<paramref name="args"/> to keep them).</summary>
        public virtual TArgs pre_forward<TArgs>(torch.nn.Module module, TArgs args) => args;

        /// <summary>Accelerate's <c>post_forward</c>: runs right after the module's forward; return the output (<paramref name="output"/> to keep it).</summary>
        public virtual TResult post_forward<TResult>(torch.nn.Module module, TResult output) => output;

        /// <summary>Accelerate's <c>detach_hook</c>: the hook is being removed from <paramref name="module"/> (undo <see cref="init_hook"/>). Exceptions propagate to the remover, and the hook is removed anyway.</summary>
        public virtual void detach_hook(torch.nn.Module module) { }

        /// <summary>
        /// TorchHooks' addition: the call of <paramref name="module"/> threw after this hook's <see cref="pre_forward{TArgs}"/> returned
        /// and before its <see cref="post_forward{TResult}"/> started — undo what <see cref="pre_forward{TArgs}"/> did. Never throw
        /// (an exception is reported, not thrown).
        /// </summary>
        public virtual void forward_failed(torch.nn.Module module) { }
    }

    /// <summary>
    /// Accelerate's <c>SequentialHook</c>: several hooks as one — <see cref="ModelHook.init_hook"/>,
    /// <see cref="ModelHook.pre_forward{TArgs}"/>, <see cref="ModelHook.post_forward{TResult}"/> and
    /// <see cref="ModelHook.detach_hook"/> run each hook in the given order (post_forward too, as in Accelerate).
    /// Attaching with <c>append: true</c> composes the same way.
    /// </summary>
    public sealed class SequentialHook : ModelHook
    {
        private readonly ModelHook[] _hooks;

        /// <summary>The hooks, run in this order.</summary>
        public SequentialHook(params ModelHook[] hooks)
        {
            if (hooks is null) throw new ArgumentNullException(nameof(hooks), "Pass the hooks to run in order, e.g. new SequentialHook(first, second).");
            for (int i = 0; i < hooks.Length; i++)
                if (hooks[i] is null) throw new ArgumentNullException(nameof(hooks), $"hooks[{i}] is null: pass only hook objects.");
            _hooks = (ModelHook[])hooks.Clone();
        }

        /// <summary>The hooks, in order.</summary>
        public IReadOnlyList<ModelHook> hooks => _hooks;

        /// <summary>True when any of the hooks wants forward under no_grad.</summary>
        public override bool no_grad => Array.Exists(_hooks, h => h.no_grad);

        /// <inheritdoc />
        public override void init_hook(torch.nn.Module module) { foreach (var h in _hooks) h.init_hook(module); }

        /// <inheritdoc />
        public override TArgs pre_forward<TArgs>(torch.nn.Module module, TArgs args)
        {
            foreach (var h in _hooks) args = h.pre_forward(module, args);
            return args;
        }

        /// <inheritdoc />
        public override TResult post_forward<TResult>(torch.nn.Module module, TResult output)
        {
            foreach (var h in _hooks) output = h.post_forward(module, output);
            return output;
        }

        /// <inheritdoc />
        public override void detach_hook(torch.nn.Module module) { foreach (var h in _hooks) h.detach_hook(module); }

        /// <inheritdoc />
        public override void forward_failed(torch.nn.Module module)
        {
            List<Exception>? errors = null;
            foreach (var h in _hooks)
            {
                try { h.forward_failed(module); }
                catch (Exception e) { (errors ??= new()).Add(e); }
            }
            if (errors is not null) throw new AggregateException("forward_failed of a SequentialHook's hooks threw.", errors);
        }
    }
}
