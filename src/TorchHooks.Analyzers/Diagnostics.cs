using Microsoft.CodeAnalysis;

namespace TorchHooks.Analyzers
{
    /// <summary>The descriptors of every TorchHooks diagnostic, in one place.</summary>
    internal static class Diagnostics
    {
        /// <summary>
        /// Where the help pages live. Relative to the repository root, because the analyzer cannot know
        /// where the repository is hosted; one constant to change when it has a public address.
        /// </summary>
        internal const string HelpLinkBase = "docs/diagnostics/";

        internal const string ForwardBypassId = "TH0001";
        internal const string HookTensorEscapeId = "TH0002";

        internal static readonly DiagnosticDescriptor ForwardBypass = new DiagnosticDescriptor(
            ForwardBypassId,
            title: "forward() called on another module skips its hooks",
            messageFormat: "'{0}.forward(...)' runs only the module's body: its hooks, autocast precision policy and tracing are skipped; call '{0}.call(...)' instead",
            category: "Usage",
            defaultSeverity: DiagnosticSeverity.Warning,
            isEnabledByDefault: true,
            description: "Calling forward(...) directly on a TorchSharp module bypasses the module call path (TorchSharp's call and TorchHooks' hooks, precision policy and tracing). Use call(...), the equivalent of PyTorch's module(x). Only this.forward / base.forward inside a module are exempt.",
            helpLinkUri: HelpLinkBase + ForwardBypassId + ".md");

        internal static readonly DiagnosticDescriptor HookTensorEscape = new DiagnosticDescriptor(
            HookTensorEscapeId,
            title: "A hook stores the tensor it was given",
            messageFormat: "The hook keeps '{0}' beyond the call, but the caller owns that tensor and may dispose it (Sequential, DisposeScope); keep your own handle: '{0}.alias().DetachFromDisposeScope()' or '{0}.detach().clone()'",
            category: "Reliability",
            defaultSeverity: DiagnosticSeverity.Warning,
            isEnabledByDefault: true,
            description: "Tensors passed to a hook belong to the call: Sequential disposes intermediate outputs, a DisposeScope disposes everything created inside it, and the gradients handed to a backward hook or a WithGradHook hook are released by autograd after the pass, so a stored reference later fails with 'Tensor invalid -- empty handle'. Store an alias detached from the dispose scope, or a detached clone.",
            helpLinkUri: HelpLinkBase + HookTensorEscapeId + ".md");
    }
}
