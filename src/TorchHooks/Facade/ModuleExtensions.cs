using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;
using Parameter = TorchSharp.Modules.Parameter;

namespace TorchHooks
{
    /// <summary>Entry points: wrap a TorchSharp model in its hook-aware facade.</summary>
    public static class ModuleExtensions
    {
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<nn.Module, object> s_facades = new();

        /// <summary>
        /// Wraps <paramref name="model"/> (and its whole submodule tree) in a hook-aware facade. Idempotent:
        /// wrapping a facade returns it, and wrapping the same model twice returns the same facade.
        /// </summary>
        public static HookedModule<T, TResult> WithHooks<T, TResult>(this nn.Module<T, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T, TResult> already) return already;
            return (HookedModule<T, TResult>)s_facades.GetValue(model, m => new HookedModule<T, TResult>((nn.Module<T, TResult>)m));
        }

        /// <summary>Wraps a model with 2 inputs; see <see cref="WithHooks{T,TResult}(nn.Module{T,TResult})"/>.</summary>
        public static HookedModule<T1, T2, TResult> WithHooks<T1, T2, TResult>(this nn.Module<T1, T2, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T1, T2, TResult> already) return already;
            return (HookedModule<T1, T2, TResult>)s_facades.GetValue(model, m => new HookedModule<T1, T2, TResult>((nn.Module<T1, T2, TResult>)m));
        }

        /// <summary>Wraps a model with 3 inputs; see <see cref="WithHooks{T,TResult}(nn.Module{T,TResult})"/>.</summary>
        public static HookedModule<T1, T2, T3, TResult> WithHooks<T1, T2, T3, TResult>(this nn.Module<T1, T2, T3, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T1, T2, T3, TResult> already) return already;
            return (HookedModule<T1, T2, T3, TResult>)s_facades.GetValue(model, m => new HookedModule<T1, T2, T3, TResult>((nn.Module<T1, T2, T3, TResult>)m));
        }

        /// <summary>Wraps a model with 4 inputs; see <see cref="WithHooks{T,TResult}(nn.Module{T,TResult})"/>.</summary>
        public static HookedModule<T1, T2, T3, T4, TResult> WithHooks<T1, T2, T3, T4, TResult>(this nn.Module<T1, T2, T3, T4, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T1, T2, T3, T4, TResult> already) return already;
            return (HookedModule<T1, T2, T3, T4, TResult>)s_facades.GetValue(model, m => new HookedModule<T1, T2, T3, T4, TResult>((nn.Module<T1, T2, T3, T4, TResult>)m));
        }

        /// <summary>Wraps a model with 5 inputs; see <see cref="WithHooks{T,TResult}(nn.Module{T,TResult})"/>.</summary>
        public static HookedModule<T1, T2, T3, T4, T5, TResult> WithHooks<T1, T2, T3, T4, T5, TResult>(this nn.Module<T1, T2, T3, T4, T5, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T1, T2, T3, T4, T5, TResult> already) return already;
            return (HookedModule<T1, T2, T3, T4, T5, TResult>)s_facades.GetValue(model, m => new HookedModule<T1, T2, T3, T4, T5, TResult>((nn.Module<T1, T2, T3, T4, T5, TResult>)m));
        }

        /// <summary>Wraps a model with 6 inputs; see <see cref="WithHooks{T,TResult}(nn.Module{T,TResult})"/>.</summary>
        public static HookedModule<T1, T2, T3, T4, T5, T6, TResult> WithHooks<T1, T2, T3, T4, T5, T6, TResult>(this nn.Module<T1, T2, T3, T4, T5, T6, TResult> model)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass the TorchSharp module to wrap.");
            if (model is HookedModule<T1, T2, T3, T4, T5, T6, TResult> already) return already;
            return (HookedModule<T1, T2, T3, T4, T5, T6, TResult>)s_facades.GetValue(model, m => new HookedModule<T1, T2, T3, T4, T5, T6, TResult>((nn.Module<T1, T2, T3, T4, T5, T6, TResult>)m));
        }
    }
}
