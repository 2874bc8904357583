using System;

namespace TorchHooks
{
    /// <summary>
    /// A span of work a <see cref="ModuleTracer"/> recorded for a module's calls besides the calls themselves: an
    /// offloaded module's weights materialised (<c>offload.load</c>, on the calling thread, inside the module's call),
    /// a wait for a read ahead still under way (<c>offload.wait</c>, inside the load), and a read ahead
    /// (<c>offload.prefetch</c>, on the prefetch thread, overlapping the calls before it). In a Chrome trace each is a
    /// complete event on its thread's track, category <c>offload</c>, with the module path and bytes as args.
    /// </summary>
    public sealed class TraceSpan
    {
        internal TraceSpan(ModuleTracer tracer, string name, string path, long bytes, int threadId, string? threadName, long start, long end)
        {
            Name = name; Path = path; Bytes = bytes; ThreadId = threadId; ThreadName = threadName;
            StartTimestamp = start; EndTimestamp = Math.Max(end, start + 1); Tracer = tracer;
        }

        /// <summary>What the span is: <c>offload.load</c>, <c>offload.wait</c> or <c>offload.prefetch</c>.</summary>
        public string Name { get; }
        /// <summary>The Chrome trace category: the part of <see cref="Name"/> before its first dot (<c>offload</c>).</summary>
        public string Category => Name.Contains('.') ? Name.Substring(0, Name.IndexOf('.')) : Name;
        /// <summary>The path of the module the work was for.</summary>
        public string Path { get; }
        /// <summary>The bytes the work moved (the module's offloaded weights).</summary>
        public long Bytes { get; }
        /// <summary>The managed thread that did the work.</summary>
        public int ThreadId { get; }
        /// <summary>That thread's name, if it has one (the prefetch thread's is <c>TorchHooks offload prefetch</c>).</summary>
        public string? ThreadName { get; }
        /// <summary>When the span began, from the tracer's start.</summary>
        public TimeSpan Start => Tracer.Elapsed(StartTimestamp);
        /// <summary>How long it lasted.</summary>
        public TimeSpan Duration => TimeSpan.FromTicks((long)((EndTimestamp - StartTimestamp) * (double)TimeSpan.TicksPerSecond / System.Diagnostics.Stopwatch.Frequency));

        internal long StartTimestamp { get; }
        internal long EndTimestamp { get; }
        internal ModuleTracer Tracer { get; }

        /// <inheritdoc />
        public override string ToString() => $"{Name} '{Path}' {Bytes} bytes, {Duration.TotalMilliseconds:F3} ms on {ThreadName ?? $"thread {ThreadId}"}";
    }
}
