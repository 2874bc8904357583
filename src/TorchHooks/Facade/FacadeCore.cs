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

        /// <summary>Throws <see cref="ObjectDisposedException"/> if the facade (<paramref name="facadeDisposed"/>) or the wrapped model was disposed.</summary>
        public void CheckAlive(bool facadeDisposed)
        {
            if (facadeDisposed)
                throw new ObjectDisposedException($"HookedModule({Inner.GetType().Name})",
                    $"This facade of a {Inner.GetType().Name} was disposed. Disposing a facade leaves the model, its parameters and its hooks alone; " +
                    "call the model itself, or model.WithHooks() for a new facade.");
            if (ModuleState.HandleReleased(Inner))
                throw ModuleState.Disposed(Inner, "The facade's model cannot be called");
        }

        /// <summary>Registers a submodule on the wrapped model and installs hook points on it.</summary>
        public void RegisterModule(string name, torch.nn.Module submodule)
        {
            Inner.register_module(name, submodule);
            Tree.Refresh();
        }
    }
}
