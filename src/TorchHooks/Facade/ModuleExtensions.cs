using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Entry points: <c>model.WithHooks()</c> wraps a TorchSharp model in its hook-aware facade (one overload per
    /// forward arity, 1–6 inputs, generated from src/TorchHooks.Generators/ArityFamilyGenerator.cs), and what
    /// every facade offers whatever its arity.
    /// </summary>
    public static partial class ModuleExtensions
    {
        private static readonly ConditionalWeakTable<torch.nn.Module, object> s_facades = new();

        private static TFacade Wrap<TModel, TFacade>(TModel model, Func<TModel, TFacade> create)
            where TModel : torch.nn.Module where TFacade : class
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is TFacade already) return already;
            if (ModuleState.IsDisposed(model)) throw ModuleState.Disposed(model, "WithHooks() needs a live model");
            return (TFacade)s_facades.GetValue(model, m => create((TModel)m));
        }

        /// <summary>A disposed facade: <c>WithHooks()</c> on its model makes a new one from now on.</summary>
        internal static void Forget(torch.nn.Module model, object facade)
        {
            lock (s_facades)
                if (s_facades.TryGetValue(model, out var current) && ReferenceEquals(current, facade)) s_facades.Remove(model);
        }

        /// <summary>
        /// The hook points of every module of the wrapped tree that can be hooked — every module with a forward,
        /// root first, in <see cref="IHookedModule.Paths"/> order; <c>ModuleList</c>/<c>ModuleDict</c> containers,
        /// which <c>m[path]</c> rejects, are left out. "Hook everything": <c>foreach (var p in m.HookPoints()) …</c>.
        /// </summary>
        public static IReadOnlyList<HookPoint> HookPoints(this IHookedModule model)
            => (model ?? throw new ArgumentNullException(nameof(model), "Call HookPoints() on a facade from WithHooks().")).Tree.HookPoints();

        /// <summary>The hook points of the modules of type <typeparamref name="TModule"/> (e.g. every <c>Conv2d</c>), in <see cref="HookPoints(IHookedModule)"/> order.</summary>
        public static IReadOnlyList<HookPoint> HookPoints<TModule>(this IHookedModule model) where TModule : torch.nn.Module
            => model.HookPoints().Where(p => p.Module is TModule).ToList();

        /// <summary>The hook points for which <paramref name="predicate"/> holds (it sees <see cref="HookPoint.Path"/>, <see cref="HookPoint.Module"/>…).</summary>
        public static IReadOnlyList<HookPoint> HookPoints(this IHookedModule model, Func<HookPoint, bool> predicate)
        {
            if (predicate is null) throw new ArgumentNullException(nameof(predicate), "Pass a condition, e.g. p => p.Path.StartsWith(\"encoder.\").");
            return model.HookPoints().Where(predicate).ToList();
        }

        /// <summary>
        /// Temporary hooks of any signature: every hook <paramref name="register"/> registers is removed when the
        /// returned scope is disposed (never hooks registered elsewhere), e.g.
        /// <c>using (m.Hooks(() =&gt; m["encoder.0"].register_forward_hook((mod, x, y) =&gt; null))) { m.call(x); }</c>.
        /// All or none: if a registration throws, the ones already made are removed. See <see cref="HookScope.Collect"/>.
        /// </summary>
        public static HookScope Hooks(this IHookedModule model, Action register)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Hooks(...) on a facade from WithHooks().");
            _ = model.Tree;   // a disposed facade refuses, as every member does
            return HookScope.Collect(register);
        }

        /// <summary>
        /// Temporary hooks on <c>Tensor → Tensor</c> modules by path, removed when the returned scope is
        /// disposed: <c>using (m.Hooks(fwd: new[] { ("encoder.0", hook) })) { m.call(x); }</c>. All paths are
        /// checked before any hook is registered.
        /// </summary>
        public static HookScope Hooks(this IHookedModule model,
            IEnumerable<(string path, ForwardHook<Tensor, Tensor> hook)>? fwd = null,
            IEnumerable<(string path, ForwardPreHook<Tensor> hook)>? pre = null,
            bool always_call = false)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Hooks(...) on a facade from WithHooks().");
            return HookScope.Create(p => model[p], fwd, pre, always_call);
        }
    }
}
