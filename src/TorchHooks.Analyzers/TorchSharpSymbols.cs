using System.Collections.Immutable;
using Microsoft.CodeAnalysis;

namespace TorchHooks.Analyzers
{
    /// <summary>The TorchSharp and TorchHooks types the analyzers look for, resolved once per compilation.</summary>
    internal sealed class TorchSharpSymbols
    {
        /// <summary><c>torch.nn.Module&lt;T..., TResult&gt;</c>: the generic module types with a <c>forward</c>, one per arity.</summary>
        public ImmutableHashSet<INamedTypeSymbol> ModuleTypes { get; }

        /// <summary><c>torch.Tensor</c>, or null when TorchSharp is not referenced.</summary>
        public INamedTypeSymbol? Tensor { get; }

        private TorchSharpSymbols(ImmutableHashSet<INamedTypeSymbol> moduleTypes, INamedTypeSymbol? tensor)
        {
            ModuleTypes = moduleTypes;
            Tensor = tensor;
        }

        public static TorchSharpSymbols Create(Compilation compilation)
        {
            var builder = ImmutableHashSet.CreateBuilder<INamedTypeSymbol>(SymbolEqualityComparer.Default);
            // Module<T,TResult> up to the widest arity TorchSharp has; missing ones are simply absent.
            for (var arity = 2; arity <= 8; arity++)
            {
                var type = compilation.GetTypeByMetadataName("TorchSharp.torch+nn+Module`" + arity);
                if (type != null) builder.Add(type);
            }
            return new TorchSharpSymbols(builder.ToImmutable(), compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor"));
        }

        /// <summary>
        /// True when <paramref name="method"/> is <c>forward</c> of a TorchSharp generic module, or an override of it
        /// (any depth). A method merely named <c>forward</c> (an overload, a <c>new</c> method) is not.
        /// </summary>
        public bool IsModuleForward(IMethodSymbol method)
        {
            if (method.Name != "forward" || method.IsStatic) return false;
            for (var m = method; m != null; m = m.OverriddenMethod)
            {
                if (ModuleTypes.Contains(m.ContainingType.OriginalDefinition)) return true;
            }
            return false;
        }

        /// <summary>
        /// TorchHooks' own facades (<c>TorchHooks.HookedModule&lt;...&gt;</c>): their <c>forward</c> runs the wrapped
        /// model's <c>call</c> with the full call path, so calling it skips nothing TorchHooks adds.
        /// </summary>
        public static bool IsTorchHooksFacade(INamedTypeSymbol type)
        {
            var t = type.OriginalDefinition;
            return t.Name == "HookedModule"
                && t.ContainingNamespace is { Name: "TorchHooks" } ns
                && ns.ContainingNamespace is { IsGlobalNamespace: true };
        }
    }
}
