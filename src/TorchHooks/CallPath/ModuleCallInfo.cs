using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Where the innermost hooked module call on this thread is: its path in the wrapped tree and how
    /// many times that module was already called in the current facade call. Read it inside a hook.
    /// A class (not a struct), so that both <c>ModuleCallInfo.Current.Path</c> and the common
    /// <c>ModuleCallInfo.Current?.Path</c> compile; outside a hooked call <see cref="Current"/> throws and says to use
    /// <see cref="CurrentOrNull"/>, which is null there.
    /// </summary>
    public sealed class ModuleCallInfo
    {
        internal ModuleCallInfo(string path, int callIndex, int depth, torch.nn.Module module, bool isRecomputation = false)
        {
            Path = path; CallIndex = callIndex; Depth = depth; Module = module; IsRecomputation = isRecomputation;
        }

        /// <summary>The module's name as in <c>named_modules()</c>; the root is <c>""</c>.</summary>
        public string Path { get; }
        /// <summary>
        /// 0 for the module's first call within the current outermost call (a facade call, or else the outermost
        /// hooked module call), 1 for the second, ... Exact when one thread at a time calls the model.
        /// </summary>
        public int CallIndex { get; }
        /// <summary>Nesting depth among hooked calls (the outermost is 0).</summary>
        public int Depth { get; }
        /// <summary>The module being called.</summary>
        public torch.nn.Module Module { get; }
        /// <summary>
        /// Whether this call is a recomputation: activation checkpointing (<see cref="CheckpointOptions"/>) running a
        /// checkpointed module again in backward, or a module inside it. Its forward hooks fire a second time then, as
        /// with PyTorch's <c>checkpoint_wrapper</c>; hooks that count or store should skip these calls. Call indices
        /// in a recomputation count from 0 within it.
        /// </summary>
        public bool IsRecomputation { get; }

        /// <summary>
        /// The innermost module call with active hooks on this thread. Read it inside a hook (or inside the
        /// forward of a module that has hooks); elsewhere use <see cref="CurrentOrNull"/>.
        /// Only calls of modules that have hooks (local or global) are recorded.
        /// </summary>
        /// <exception cref="InvalidOperationException">No hooked module call is under way on this thread.</exception>
        public static ModuleCallInfo Current
            => CurrentOrNull ?? throw new InvalidOperationException(
                "ModuleCallInfo.Current is read inside a hook (or the forward of a module with hooks); no hooked module call is under way on this thread. Use ModuleCallInfo.CurrentOrNull where there may be none.");

        /// <summary>The innermost module call with active hooks on this thread, or null outside of any.</summary>
        public static ModuleCallInfo? CurrentOrNull
        {
            get
            {
                var stack = CallStack.CurrentOrNull;
                var top = stack?.Top;
                if (top is null) return null;
                return new ModuleCallInfo(top.Node.Path, top.CallIndex, stack!.Count - 1, top.Module, top.IsRecomputation);
            }
        }

        /// <inheritdoc />
        public override string ToString() => $"{(Path.Length == 0 ? "<root>" : Path)}#{CallIndex}{(IsRecomputation ? " (recomputation)" : "")}";
    }
}
