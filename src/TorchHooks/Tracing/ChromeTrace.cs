using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;

namespace TorchHooks
{
    /// <summary>
    /// Writes a <see cref="ModuleTracer"/>'s calls in Chrome's Trace Event Format, the JSON that Perfetto
    /// (ui.perfetto.dev) and chrome://tracing open: <c>{"traceEvents": [...], "displayTimeUnit": "ms"}</c>.
    /// </summary>
    /// <remarks>
    /// <para>One complete event (<c>"ph": "X"</c>) per finished call, <c>ts</c> and <c>dur</c> in microseconds from
    /// the tracer's start; <c>name</c> is the module path (the root's is its type), <c>cat</c> is <c>module</c>
    /// (<c>module.backward</c> for backward records, <c>module.recompute</c> for a checkpoint's recompute); <c>args</c> carry type, path, call index, id, parent id,
    /// input and output tensors (<c>"[1, 64, 56, 56] Float32 cpu"</c>), training flag and autocast dtype.</para>
    /// <para>Tracks: <c>pid</c> is the process id, <c>tid</c> the managed thread id; backward records go on a
    /// track of their own per thread (<c>tid + 1,000,000</c>, named "… (backward)"), because Perfetto requires
    /// the events of one track to nest perfectly. Metadata events (<c>"ph": "M"</c>) name the process and the
    /// tracks. Within a track events nest strictly: a call that outlived its enclosing call (a call abandoned by
    /// an exception and finished later) is cut at the enclosing call's end and marked <c>"clamped": true</c>.
    /// Calls still running when the trace is written are left out.</para>
    /// <para>Spans of work for the calls (<see cref="ModuleTracer.Spans"/>: <c>offload.load</c>, <c>offload.wait</c>,
    /// <c>offload.prefetch</c>) are complete events of category <c>offload</c> on the track of the thread that did the
    /// work, with <c>path</c> and <c>bytes</c> args: a load nests inside its module's call, a wait inside the load, and
    /// reads ahead sit on the prefetch thread's own track, overlapping the calls they run beside.</para>
    /// </remarks>
    public static class ChromeTrace
    {
        /// <summary>The <c>tid</c> offset of a thread's backward track.</summary>
        public const int BackwardTrackOffset = 1_000_000;

        /// <summary>The trace as a JSON string.</summary>
        public static string ToJson(ModuleTracer tracer)
        {
            using var stream = new MemoryStream();
            Write(tracer, stream);
            return Encoding.UTF8.GetString(stream.ToArray());
        }

        /// <summary>Writes the trace to <paramref name="stream"/> (UTF-8 JSON).</summary>
        public static void Write(ModuleTracer tracer, Stream stream)
        {
            if (tracer is null) throw new ArgumentNullException(nameof(tracer), "Pass the tracer whose calls to write.");
            if (stream is null) throw new ArgumentNullException(nameof(stream), "Pass a writable stream, e.g. File.Create(\"trace.json\").");
            int pid = Environment.ProcessId;
            var calls = tracer.Calls.Where(c => c.Finished).ToList();

            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
            w.WriteStartObject();
            w.WriteString("displayTimeUnit", "ms");
            w.WriteStartObject("otherData");
            w.WriteString("producer", "TorchHooks");
            w.WriteString("startedAt", tracer.StartedAt.ToString("o"));
            w.WriteNumber("dropped", tracer.Dropped);
            w.WriteEndObject();
            w.WriteStartArray("traceEvents");

            Meta(w, "process_name", pid, 0, "name", tracer.Name);
            var events = calls.Select(c => new Event(Track(c), c.StartTimestamp, c.EndTimestamp, c.Id, c, null,
                                                     (c.ThreadName ?? $"thread {c.ThreadId}") + (c.Phase == CallPhase.Backward ? " (backward)" : "")))
                .Concat(tracer.Spans.Select((sp, i) => new Event(sp.ThreadId, sp.StartTimestamp, sp.EndTimestamp, int.MaxValue / 2 + i, null, sp,
                                                                  sp.ThreadName ?? $"thread {sp.ThreadId}")));
            foreach (var track in events.GroupBy(e => e.Track).OrderBy(g => g.Key))
            {
                Meta(w, "thread_name", pid, track.Key, "name", track.First().ThreadName);
                Meta(w, "thread_sort_index", pid, track.Key, "sort_index", track.Key);
                foreach (var (e, ts, end, clamped) in Nest(tracer, track))
                {
                    if (e.Call is { } call) Complete(w, pid, track.Key, call, ts, end - ts, clamped);
                    else Complete(w, pid, track.Key, e.Span!, ts, end - ts, clamped);
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }

        /// <summary>One event of a track: a module call, or a span of work for one (offload).</summary>
        private sealed record Event(int Track, long Start, long End, int Order, ModuleCallRecord? Call, TraceSpan? Span, string ThreadName);

        private static int Track(ModuleCallRecord c) => c.Phase == CallPhase.Backward ? c.ThreadId + BackwardTrackOffset : c.ThreadId;

        /// <summary>A track's events ordered by start, each cut to its enclosing event so that the track nests strictly.</summary>
        private static IEnumerable<(Event Event, double Ts, double End, bool Clamped)> Nest(ModuleTracer tracer, IEnumerable<Event> track)
        {
            var ordered = track.OrderBy(c => c.Start).ThenByDescending(c => c.End).ThenBy(c => c.Order);
            var open = new Stack<double>();
            foreach (var c in ordered)
            {
                double ts = Round(tracer.Microseconds(c.Start));
                double end = Round(tracer.Microseconds(c.End));
                while (open.Count > 0 && open.Peek() <= ts) open.Pop();
                bool clamped = false;
                if (open.Count > 0 && end > open.Peek()) { end = open.Peek(); clamped = true; }
                if (end < ts) end = ts;
                open.Push(end);
                yield return (c, ts, end, clamped);
            }
        }

        private static double Round(double us) => Math.Round(us, 3);

        private static void Meta(Utf8JsonWriter w, string name, int pid, int tid, string key, string value)
        {
            w.WriteStartObject();
            w.WriteString("name", name); w.WriteString("ph", "M"); w.WriteNumber("pid", pid); w.WriteNumber("tid", tid);
            w.WriteStartObject("args"); w.WriteString(key, value); w.WriteEndObject();
            w.WriteEndObject();
        }

        private static void Meta(Utf8JsonWriter w, string name, int pid, int tid, string key, int value)
        {
            w.WriteStartObject();
            w.WriteString("name", name); w.WriteString("ph", "M"); w.WriteNumber("pid", pid); w.WriteNumber("tid", tid);
            w.WriteStartObject("args"); w.WriteNumber(key, value); w.WriteEndObject();
            w.WriteEndObject();
        }

        private static void Complete(Utf8JsonWriter w, int pid, int tid, ModuleCallRecord c, double ts, double dur, bool clamped)
        {
            BeginComplete(w, c.Path.Length == 0 ? c.ModuleType : c.Path,
                c.Phase == CallPhase.Backward ? "module.backward" : c.Phase == CallPhase.Recompute ? "module.recompute" : "module", pid, tid, ts, dur);
            w.WriteString("type", c.ModuleType);
            w.WriteString("path", c.Path);
            w.WriteNumber("call_index", c.CallIndex);
            w.WriteNumber("id", c.Id);
            w.WriteNumber("parent", c.ParentId);
            w.WriteNumber("depth", c.Depth);
            w.WriteBoolean("training", c.Training);
            if (c.AutocastCpu is { } cpu) w.WriteString("autocast_cpu", cpu.ToString());
            if (c.AutocastCuda is { } cuda) w.WriteString("autocast_cuda", cuda.ToString());
            Tensors(w, c.Phase == CallPhase.Backward ? "grad_outputs" : "inputs", c.Inputs);
            Tensors(w, c.Phase == CallPhase.Backward ? "grad_inputs" : "outputs", c.Outputs);
            if (c.Failed) w.WriteBoolean("failed", true);
            if (clamped) w.WriteBoolean("clamped", true);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        /// <summary>A complete ("X") event's common fields, leaving its <c>args</c> object open.</summary>
        private static void BeginComplete(Utf8JsonWriter w, string name, string category, int pid, int tid, double ts, double dur)
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("cat", category);
            w.WriteString("ph", "X");
            w.WriteNumber("ts", ts);
            w.WriteNumber("dur", Round(dur));
            w.WriteNumber("pid", pid);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
        }

        private static void Complete(Utf8JsonWriter w, int pid, int tid, TraceSpan span, double ts, double dur, bool clamped)
        {
            BeginComplete(w, span.Name, span.Category, pid, tid, ts, dur);
            w.WriteString("path", span.Path);
            w.WriteNumber("bytes", span.Bytes);
            if (clamped) w.WriteBoolean("clamped", true);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        private static void Tensors(Utf8JsonWriter w, string name, IReadOnlyList<TensorInfo> tensors)
        {
            w.WriteStartArray(name);
            foreach (var t in tensors) w.WriteStringValue(t.ToString());
            w.WriteEndArray();
        }
    }
}
