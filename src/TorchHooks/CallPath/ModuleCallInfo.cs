using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Where the innermost hooked module call on this thread is: its path in the wrapped tree and how
    /// many times that module was already called in the current facade call. Read it inside a hook.
    /// </summary>
    public readonly struct ModuleCallInfo
    {
        internal ModuleCallInfo(string path, int callIndex, int depth, torch.nn.Module module)
        {
            this.path = path; call_index = callIndex; this.depth = depth; this.module = module;
        }

        /// <summary>The module's name as in <c>named_modules()</c>; the root is <c>""</c>.</summary>
        public string path { get; }
        /// <summary>
        /// 0 for the module's first call within the current outermost call (a facade call, or else the outermost
        /// hooked module call), 1 for the second, ... Exact when one thread at a time calls the model.
        /// </summary>
        public int call_index { get; }
        /// <summary>Nesting depth among hooked calls (the outermost is 0).</summary>
        public int depth { get; }
        /// <summary>The module being called.</summary>
        public torch.nn.Module module { get; }

        /// <summary>
        /// The innermost module call with active hooks on this thread, or null outside of any.
        /// Only calls of modules that have hooks (local or global) are recorded.
        /// </summary>
        public static ModuleCallInfo? Current
        {
            get
            {
                var stack = CallStack.CurrentOrNull;
                var top = stack?.Top;
                if (top is null) return null;
                return new ModuleCallInfo(top.Node.path, top.CallIndex, stack!.Count - 1, top.Module);
            }
        }

        /// <inheritdoc />
        public override string ToString() => $"{(path.Length == 0 ? "<root>" : path)}#{call_index}";
    }
}
