using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace TorchHooks.Analyzers
{
    /// <summary>
    /// TH0002: a hook lambda — forward hook or pre-hook, full backward hook or backward pre-hook, or a tensor
    /// gradient hook (<c>WithGradHook</c>) — stores one of its tensor arguments as it is (a <c>Tensor</c> parameter,
    /// or an element of a gradient list such as <c>grad_output[0]</c>, or the list itself) — in a field, a
    /// property, an indexer, an array element, a captured variable, or a collection (<c>Add</c>, <c>Insert</c>, …).
    /// The tensor belongs to the call: <c>Sequential</c> disposes intermediate outputs and a <c>DisposeScope</c>
    /// disposes what was created inside it, so the stored reference later fails ("Tensor invalid -- empty handle").
    /// Storing <c>t.alias().DetachFromDisposeScope()</c> or <c>t.detach().clone()</c> is not flagged: only the
    /// parameter itself, unchanged, is.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class HookTensorEscapeAnalyzer : DiagnosticAnalyzer
    {
        private static readonly ImmutableHashSet<string> HookRegistrations = ImmutableHashSet.Create(
            "register_forward_hook", "register_forward_pre_hook",
            "register_module_forward_hook", "register_module_forward_pre_hook",
            // backward: gradients are handed over as lists (PyTorch's tuples), and by libtorch's autograd, which frees them
            "register_full_backward_hook", "register_full_backward_pre_hook",
            "register_module_full_backward_hook", "register_module_full_backward_pre_hook",
            "WithGradHook");

        private static readonly ImmutableHashSet<string> CollectionAdds = ImmutableHashSet.Create(
            "Add", "Insert", "Push", "Enqueue", "TryAdd", "AddFirst", "AddLast", "AddOrUpdate", "GetOrAdd", "TryUpdate", "AddRange", "InsertRange");

        /// <inheritdoc />
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } =
            ImmutableArray.Create(Diagnostics.HookTensorEscape);

        /// <inheritdoc />
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterCompilationStartAction(start =>
            {
                var symbols = TorchSharpSymbols.Create(start.Compilation);
                var enumerable = start.Compilation.GetSpecialType(SpecialType.System_Collections_IEnumerable);
                if (symbols.Tensor == null) return;
                start.RegisterOperationAction(c => AnalyzeRegistration(c, symbols.Tensor, enumerable), OperationKind.Invocation);
            });
        }

        private static void AnalyzeRegistration(OperationAnalysisContext context, INamedTypeSymbol tensor, INamedTypeSymbol enumerable)
        {
            var invocation = (IInvocationOperation)context.Operation;
            var method = invocation.TargetMethod;
            if (!HookRegistrations.Contains(method.Name) || !IsTorchApi(method.ContainingType)) return;

            foreach (var argument in invocation.Arguments)
            {
                var value = argument.Value;
                while (value is IConversionOperation conversion) value = conversion.Operand;
                if (value is IDelegateCreationOperation creation) value = creation.Target;
                if (value is not IAnonymousFunctionOperation hook) continue;

                var tensorParameters = hook.Symbol.Parameters
                    .Where(p => SymbolEqualityComparer.Default.Equals(p.Type, tensor))
                    .ToImmutableHashSet<IParameterSymbol>(SymbolEqualityComparer.Default);
                // Backward hooks' gradient lists (IReadOnlyList<Tensor?>): the list and its elements belong to the pass.
                var listParameters = hook.Symbol.Parameters
                    .Where(p => IsTensorList(p.Type, tensor))
                    .ToImmutableHashSet<IParameterSymbol>(SymbolEqualityComparer.Default);
                if (tensorParameters.IsEmpty && listParameters.IsEmpty) continue;

                foreach (var reference in hook.Body.Descendants().OfType<IParameterReferenceOperation>())
                {
                    IOperation stored;
                    string name;
                    if (tensorParameters.Contains(reference.Parameter)) { stored = reference; name = reference.Parameter.Name; }
                    else if (listParameters.Contains(reference.Parameter))
                    {
                        // grad_output[0] (an element), or grad_output itself (the list: list.AddRange(grad_output), kept = grad_output)
                        if (reference.Parent is IPropertyReferenceOperation { Property.IsIndexer: true } element && element.Instance == reference
                            && SymbolEqualityComparer.Default.Equals(element.Type, tensor))
                        {
                            stored = element;
                            name = element.Syntax.ToString();
                        }
                        else { stored = reference; name = reference.Parameter.Name; }
                    }
                    else continue;
                    if (Escapes(stored, hook, enumerable))
                        context.ReportDiagnostic(Diagnostic.Create(Diagnostics.HookTensorEscape, stored.Syntax.GetLocation(), name));
                }
            }
        }

        /// <summary>Is the parameter, unchanged, stored somewhere that outlives the hook call?</summary>
        private static bool Escapes(IOperation reference, IAnonymousFunctionOperation hook, INamedTypeSymbol enumerable)
        {
            // Look through implicit conversions and tuple literals: `list.Add((name, y))` stores y too.
            var node = reference;
            while (node.Parent is IConversionOperation { IsImplicit: true } or ITupleOperation)
                node = node.Parent;

            switch (node.Parent)
            {
                case ISimpleAssignmentOperation assignment when assignment.Value == node:
                    return OutlivesHook(assignment.Target, hook);
                case IArgumentOperation { Parent: IInvocationOperation call }:
                    return CollectionAdds.Contains(call.TargetMethod.Name)
                        && call.Instance?.Type is { } receiverType
                        && IsEnumerable(receiverType, enumerable)
                        && OutlivesHook(call.Instance, hook);
                default:
                    return false;
            }
        }

        /// <summary>Does this storage location live longer than one run of the hook?</summary>
        private static bool OutlivesHook(IOperation target, IAnonymousFunctionOperation hook)
        {
            while (target is IConversionOperation conversion) target = conversion.Operand;
            switch (target)
            {
                case IFieldReferenceOperation:
                case IPropertyReferenceOperation:          // properties and indexers: dict[name] = y
                case IArrayElementReferenceOperation:
                    return true;
                case ILocalReferenceOperation local:       // a captured variable, not the hook's own local
                    return !DeclaredInside(local.Local, hook);
                case IParameterReferenceOperation parameter:   // an enclosing method's parameter, captured
                    return !SymbolEqualityComparer.Default.Equals(parameter.Parameter.ContainingSymbol, hook.Symbol);
                default:
                    return false;
            }
        }

        private static bool DeclaredInside(ILocalSymbol local, IAnonymousFunctionOperation hook)
        {
            var span = hook.Syntax.Span;
            return local.DeclaringSyntaxReferences.Any(r => r.SyntaxTree == hook.Syntax.SyntaxTree && span.Contains(r.Span));
        }

        /// <summary>A list or sequence of tensors (a backward hook's <c>IReadOnlyList&lt;Tensor?&gt;</c> gradients).</summary>
        private static bool IsTensorList(ITypeSymbol type, INamedTypeSymbol tensor)
            => type is INamedTypeSymbol { IsGenericType: true } named
               && (named.Name is "IReadOnlyList" or "IList" or "IEnumerable" or "IReadOnlyCollection" or "List")
               && SymbolEqualityComparer.Default.Equals(named.TypeArguments[0], tensor);

        private static bool IsEnumerable(ITypeSymbol type, INamedTypeSymbol enumerable)
            => SymbolEqualityComparer.Default.Equals(type, enumerable)
               || type.AllInterfaces.Any(i => SymbolEqualityComparer.Default.Equals(i, enumerable));

        /// <summary>TorchHooks' hook points, facades and global hooks, or TorchSharp's own hookable modules.</summary>
        private static bool IsTorchApi(INamedTypeSymbol type)
        {
            var ns = type.ContainingNamespace;
            while (ns is { ContainingNamespace.IsGlobalNamespace: false }) ns = ns.ContainingNamespace;
            return ns is { Name: "TorchHooks" or "TorchSharp" };
        }
    }
}
