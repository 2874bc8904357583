using TorchSharp;

namespace TorchHooks
{
    /// <summary>What every TorchHooks facade offers, whatever its forward signature.</summary>
    public interface IHookedModule
    {
        /// <summary>The wrapped model, unchanged.</summary>
        torch.nn.Module Unwrap();

        /// <summary>The hook point of the module at <paramref name="path"/> (a <c>named_modules()</c> name; the root is <c>""</c>).</summary>
        /// <exception cref="System.Collections.Generic.KeyNotFoundException">No such path; the message lists the nearest valid ones.</exception>
        HookPoint this[string path] { get; }

        /// <summary>The hook point of the wrapped model itself (path <c>""</c>).</summary>
        HookPoint Root { get; }

        /// <summary>Every module path of the wrapped tree, root first.</summary>
        System.Collections.Generic.IReadOnlyCollection<string> Paths { get; }

        /// <summary>The wrapped tree (paths → hook points).</summary>
        internal ModuleTree Tree { get; }
    }
}
