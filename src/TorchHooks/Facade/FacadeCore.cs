using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// What every facade holds, whatever its arity: the wrapped model, its tree of hook points and the
    /// root's. The facades themselves (<c>HookedModule&lt;…&gt;</c>, 1–6 inputs) are generated from one
    /// template, src/TorchHooks.Generators/ArityFamilyGenerator.cs: a <c>Module</c> of the wrapped model's
    /// signature whose <c>forward</c> brackets the model's <c>call</c> (<see cref="FacadeCall"/>) and whose
    /// drop-in members forward to the model.
    /// </summary>
    internal readonly struct FacadeCore<TModule> where TModule : torch.nn.Module
    {
        public FacadeCore(TModule inner)
        {
            Inner = inner;
            Tree = new ModuleTree(inner);
            Root = Tree[""];
        }

        public TModule Inner { get; }
        public ModuleTree Tree { get; }
        public HookPoint Root { get; }

        /// <summary>Registers a submodule on the wrapped model and installs hook points on it.</summary>
        public void RegisterModule(string name, torch.nn.Module submodule)
        {
            Inner.register_module(name, submodule);
            Tree.Refresh();
        }
    }

    /// <summary>
    /// The facade's per-call check, outside the generic <see cref="FacadeCore{TModule}"/> struct: a method of a generic
    /// struct called from shared generic code goes through an instantiating stub on every call.
    /// </summary>
    internal static class FacadeChecks
    {
        /// <summary>Throws <see cref="ObjectDisposedException"/> if the facade (<paramref name="facadeDisposed"/>) or the wrapped model was disposed.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static void CheckAlive(torch.nn.Module inner, bool facadeDisposed)
        {
            if (facadeDisposed || ModuleState.HandleReleased(inner)) Throw(inner, facadeDisposed);
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static void Throw(torch.nn.Module inner, bool facadeDisposed)
        {
            if (facadeDisposed)
                throw new ObjectDisposedException($"HookedModule({inner.GetType().Name})",
                    $"This facade of a {inner.GetType().Name} was disposed. Disposing a facade leaves the model, its parameters and its hooks alone; " +
                    "call the model itself, or model.WithHooks() for a new facade.");
            throw ModuleState.Disposed(inner, "The facade's model cannot be called");
        }
    }
}
