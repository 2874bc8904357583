namespace TorchHooks
{
    // The tracing concern's place on the per-module node (ModuleTree/HookPoint.cs): the span name and type name, built once.
    public abstract partial class HookPoint
    {
        private string? _spanName;
        private string? _typeName;

        /// <summary>The OpenTelemetry span name of this module's calls: <c>forward &lt;path&gt;</c>.</summary>
        internal string SpanName => _spanName ??= "forward " + (Path.Length == 0 ? "<root>" : Path);

        /// <summary>The module's class name, e.g. <c>Conv2d</c> (traces, spans).</summary>
        internal string TypeName => _typeName ??= Module.GetType().Name;

        /// <summary>The node's index in the node table of the tracer that last recorded it (saves that tracer a lookup).</summary>
        internal TraceSeat? TraceSeat;
    }

    /// <summary>A node's index in one tracer's node table (one object, so that tracer and index are read together).</summary>
    internal sealed class TraceSeat
    {
        public readonly ModuleTracer Tracer;
        public readonly int Index;
        public TraceSeat(ModuleTracer tracer, int index) { Tracer = tracer; Index = index; }
    }
}
