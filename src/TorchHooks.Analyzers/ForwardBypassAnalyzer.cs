using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace TorchHooks.Analyzers
{
    /// <summary>
    /// TH0001: <c>child.forward(x)</c> on a TorchSharp module other than <c>this</c>/<c>base</c> runs only the
    /// module's body and skips its call path (TorchSharp hooks, TorchHooks hooks, precision policy, tracing).
    /// PyTorch users write <c>child(x)</c>; the TorchSharp equivalent is <c>child.call(x)</c>
    /// (TorchSharp issues #1203 and #1059 are users hitting this).
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class ForwardBypassAnalyzer : DiagnosticAnalyzer
    {
        /// <inheritdoc />
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } =
            ImmutableArray.Create(Diagnostics.ForwardBypass);

        /// <inheritdoc />
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterCompilationStartAction(start =>
            {
                var symbols = TorchSharpSymbols.Create(start.Compilation);
                if (symbols.ModuleTypes.IsEmpty) return;   // no TorchSharp: nothing to look at
                start.RegisterOperationAction(c => AnalyzeInvocation(c, symbols), OperationKind.Invocation);
                start.RegisterOperationAction(c => AnalyzeMethodReference(c, symbols), OperationKind.MethodReference);
            });
        }

        private static void AnalyzeInvocation(OperationAnalysisContext context, TorchSharpSymbols symbols)
        {
            var invocation = (IInvocationOperation)context.Operation;
            if (Bypasses(invocation.TargetMethod, invocation.Instance, symbols))
                Report(context, invocation.Instance!);
        }

        // `Func<Tensor, Tensor> f = child.forward;` bypasses the call path just the same.
        private static void AnalyzeMethodReference(OperationAnalysisContext context, TorchSharpSymbols symbols)
        {
            var reference = (IMethodReferenceOperation)context.Operation;
            if (Bypasses(reference.Method, reference.Instance, symbols))
                Report(context, reference.Instance!);
        }

        private static bool Bypasses(IMethodSymbol method, IOperation? receiver, TorchSharpSymbols symbols)
        {
            if (receiver == null || !symbols.IsModuleForward(method)) return false;
            // this.forward / base.forward / implicit this: a module running its own (or its base's) body.
            if (receiver is IInstanceReferenceOperation) return false;
            // A TorchHooks facade's forward is the wrapped model's call with the full call path.
            if (TorchSharpSymbols.IsTorchHooksFacade(method.ContainingType)) return false;
            return true;
        }

        private static void Report(OperationAnalysisContext context, IOperation receiver)
        {
            // `child?.forward(x)`: the invocation is only `.forward(x)`; mark the whole `child?.forward(x)`.
            var syntax = context.Operation.Syntax;
            if (syntax.Parent is ConditionalAccessExpressionSyntax conditional && conditional.WhenNotNull == syntax)
                syntax = conditional;
            context.ReportDiagnostic(Diagnostic.Create(Diagnostics.ForwardBypass, syntax.GetLocation(), receiver.Syntax.ToString()));
        }
    }
}
