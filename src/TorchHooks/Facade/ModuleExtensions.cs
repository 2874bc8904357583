using System;
using System.Collections.Generic;
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
            return (TFacade)s_facades.GetValue(model, m => create((TModel)m));
        }

        /// <summary>
        /// Temporary hooks on <c>Tensor → Tensor</c> modules by path, removed when the returned scope is
        /// disposed: <c>using (m.Hooks(fwd: new[] { ("encoder.0", hook) })) { m.call(x); }</c>. All paths are
        /// checked before any hook is registered.
        /// </summary>
        public static HookScope Hooks(this IHookedModule model,
            IEnumerable<(string path, Func<torch.nn.Module, Tensor, Tensor, HookResult<Tensor>?> hook)>? fwd = null,
            IEnumerable<(string path, Func<torch.nn.Module, Tensor, HookResult<Tensor>?> hook)>? pre = null,
            bool always_call = false)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Hooks(...) on a facade from WithHooks().");
            return HookScope.Create(p => model[p], fwd, pre, always_call);
        }
    }
}
