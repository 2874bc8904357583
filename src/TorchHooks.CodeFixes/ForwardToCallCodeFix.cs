using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using TorchHooks.Analyzers;

namespace TorchHooks.CodeFixes
{
    /// <summary>
    /// TH0001 fix: <c>child.forward(args)</c> → <c>child.call(args)</c> (also <c>child?.forward(args)</c> and the
    /// method group <c>child.forward</c>). Only the name changes; arguments and trivia stay as written. Named
    /// arguments are dropped when they are already in parameter order (an override may name its parameters
    /// differently from <c>call</c>); otherwise no fix is offered.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ForwardToCallCodeFix)), Shared]
    public sealed class ForwardToCallCodeFix : CodeFixProvider
    {
        private const string Title = "Call 'call(...)' instead of 'forward(...)'";

        /// <inheritdoc />
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(Diagnostics.ForwardBypassId);

        /// <inheritdoc />
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc />
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root == null) return;
            foreach (var diagnostic in context.Diagnostics)
            {
                var node = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true);
                var name = FindForwardName(node);
                if (name == null) continue;
                var arguments = (name.Parent?.Parent as InvocationExpressionSyntax)?.ArgumentList;
                if (arguments != null && arguments.Arguments.Any(a => a.NameColon != null)
                    && !await NamedArgumentsInOrderAsync(context.Document, arguments, context.CancellationToken).ConfigureAwait(false))
                    continue;
                context.RegisterCodeFix(
                    CodeAction.Create(Title, ct => RewriteAsync(context.Document, name, arguments, ct), equivalenceKey: Title),
                    diagnostic);
            }
        }

        /// <summary>The <c>forward</c> identifier of <c>x.forward(...)</c>, <c>x?.forward(...)</c> or <c>x.forward</c>.</summary>
        private static SimpleNameSyntax? FindForwardName(SyntaxNode node)
        {
            foreach (var n in node.DescendantNodesAndSelf())
            {
                switch (n)
                {
                    case MemberAccessExpressionSyntax { Name: { Identifier.ValueText: "forward" } name }:
                        return name;
                    case MemberBindingExpressionSyntax { Name: { Identifier.ValueText: "forward" } name }:
                        return name;
                }
            }
            return null;
        }

        private static async Task<bool> NamedArgumentsInOrderAsync(Document document, ArgumentListSyntax arguments, CancellationToken ct)
        {
            var model = await document.GetSemanticModelAsync(ct).ConfigureAwait(false);
            if (model?.GetOperation(arguments.Parent!, ct) is not Microsoft.CodeAnalysis.Operations.IInvocationOperation invocation) return false;
            var list = arguments.Arguments;
            for (var i = 0; i < list.Count; i++)
            {
                var argument = invocation.Arguments.FirstOrDefault(a => a.Syntax == list[i]);
                if (argument?.Parameter == null || argument.Parameter.Ordinal != i) return false;
            }
            return true;
        }

        private static async Task<Document> RewriteAsync(Document document, SimpleNameSyntax name, ArgumentListSyntax? arguments, CancellationToken ct)
        {
            var root = await document.GetSyntaxRootAsync(ct).ConfigureAwait(false);
            if (root == null) return document;
            var newName = SyntaxFactory.IdentifierName(SyntaxFactory.Identifier(name.Identifier.LeadingTrivia, "call", name.Identifier.TrailingTrivia));
            if (arguments == null || !arguments.Arguments.Any(a => a.NameColon != null))
                return document.WithSyntaxRoot(root.ReplaceNode(name, newName));

            // Drop the names (in parameter order, checked above), keeping each argument's own trivia.
            var newArguments = arguments.WithArguments(SyntaxFactory.SeparatedList(
                arguments.Arguments.Select(a => a.NameColon == null ? a : a.WithNameColon(null).WithLeadingTrivia(a.GetLeadingTrivia())),
                arguments.Arguments.GetSeparators()));
            return document.WithSyntaxRoot(root.ReplaceNodes(new SyntaxNode[] { name, arguments },
                (original, _) => original == name ? newName : newArguments));
        }
    }
}
