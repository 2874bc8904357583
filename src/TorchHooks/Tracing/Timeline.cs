using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Text;

namespace TorchHooks
{
    /// <summary>
    /// A flame-graph style picture of traced module calls: time runs left to right, each call is a bar under
    /// the call that made it, one lane per thread track (backward on its own lane); spans of work for the calls
    /// (<see cref="ModuleTracer.Spans"/>: offload loads in blue, waits in red, reads ahead in green on the prefetch
    /// thread's lane) under the call or span that encloses them. Rendered as SVG
    /// (<see cref="ToSvg"/>); notebooks show it inline through the package's notebook extension.
    /// </summary>
    public sealed class Timeline
    {
        private readonly List<(ModuleCallRecord Call, double Start, double End, int Track)> _bars = new();
        private readonly List<(int Track, string Name, int Depth)> _tracks = new();
        private readonly List<(TraceSpan Span, double Start, double End, int Track, int Depth)> _spans = new();

        /// <summary>The calls of <paramref name="tracer"/> (finished ones), from the first call's start to the last one's end.</summary>
        public Timeline(ModuleTracer tracer)
        {
            if (tracer is null) throw new ArgumentNullException(nameof(tracer), "Pass a tracer, e.g. model.Trace().");
            var calls = tracer.Calls.Where(c => c.Finished).ToList();
            foreach (var group in calls.GroupBy(c => (c.ThreadId, c.Phase)).OrderBy(g => g.Key.Phase).ThenBy(g => g.Key.ThreadId))
            {
                int track = _tracks.Count;
                var first = group.First();
                _tracks.Add((track, (first.ThreadName ?? $"thread {first.ThreadId}") + (first.Phase == CallPhase.Backward ? " (backward)" : ""), group.Max(c => c.Depth) + 1));
                foreach (var c in group)
                    _bars.Add((c, tracer.Microseconds(c.StartTimestamp), tracer.Microseconds(c.EndTimestamp), track));
            }
            AddSpans(tracer);
            if (_bars.Count > 0 || _spans.Count > 0)
            {
                StartMicroseconds = _bars.Select(b => b.Start).Concat(_spans.Select(b => b.Start)).Min();
                EndMicroseconds = _bars.Select(b => b.End).Concat(_spans.Select(b => b.End)).Max();
            }
        }

        /// <summary>
        /// The tracer's spans of work (<see cref="ModuleTracer.Spans"/>: offload loads, waits, reads ahead) as bars on their
        /// thread's lane, each one row below the innermost call or span that encloses it; a thread with spans only (the
        /// prefetch thread) gets a lane of its own.
        /// </summary>
        private void AddSpans(ModuleTracer tracer)
        {
            var lanes = new Dictionary<int, int>();   // thread id → forward track
            foreach (var (track, _, _) in _tracks)
            {
                var bar = _bars.FirstOrDefault(b => b.Track == track);
                if (bar.Call is not null && bar.Call.Phase != CallPhase.Backward) lanes.TryAdd(bar.Call.ThreadId, track);
            }
            foreach (var span in tracer.Spans.OrderBy(s => s.StartTimestamp).ThenByDescending(s => s.EndTimestamp))
            {
                double start = tracer.Microseconds(span.StartTimestamp), end = tracer.Microseconds(span.EndTimestamp);
                if (!lanes.TryGetValue(span.ThreadId, out int track))
                {
                    track = _tracks.Count;
                    lanes[span.ThreadId] = track;
                    _tracks.Add((track, span.ThreadName ?? $"thread {span.ThreadId}", 0));
                }
                int depth = 0;
                foreach (var b in _bars)
                    if (b.Track == track && b.Start <= start && end <= b.End) depth = Math.Max(depth, b.Call.Depth + 1);
                foreach (var b in _spans)
                    if (b.Track == track && b.Start <= start && end <= b.End) depth = Math.Max(depth, b.Depth + 1);
                _spans.Add((span, start, end, track, depth));
                var lane = _tracks[track];
                if (depth + 1 > lane.Depth) _tracks[track] = (lane.Track, lane.Name, depth + 1);
            }
        }

        /// <summary>How many spans of work (offload loads, waits, reads ahead) the picture shows.</summary>
        public int SpanCount => _spans.Count;

        /// <summary>How many calls the picture shows.</summary>
        public int Count => _bars.Count;

        /// <summary>The first call's start, in microseconds from the tracer's start.</summary>
        public double StartMicroseconds { get; }

        /// <summary>The last call's end, in microseconds from the tracer's start.</summary>
        public double EndMicroseconds { get; }

        /// <summary>The picture's width in pixels (default 960).</summary>
        public int Width { get; init; } = 960;

        /// <summary>The height of one call's bar in pixels (default 18).</summary>
        public int RowHeight { get; init; } = 18;

        /// <summary>The picture as a standalone SVG document.</summary>
        public string ToSvg()
        {
            const int left = 4, top = 22, laneGap = 20;
            double span = Math.Max(EndMicroseconds - StartMicroseconds, 1e-3);
            double scale = (Width - 2 * left) / span;
            var laneTop = new Dictionary<int, int>();
            int y = top;
            foreach (var (track, _, depth) in _tracks) { laneTop[track] = y + 14; y += 14 + depth * RowHeight + laneGap; }
            int height = Math.Max(y, top + 20);

            var sb = new StringBuilder();
            sb.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{height}\" viewBox=\"0 0 {Width} {height}\" font-family=\"monospace\" font-size=\"11\">"));
            sb.Append(Inv($"<text x=\"{left}\" y=\"14\">{Count} module calls{(_spans.Count > 0 ? $", {_spans.Count} offload spans" : "")}, {Format(span)}</text>"));
            foreach (var (track, name, _) in _tracks)
                sb.Append(Inv($"<text x=\"{left}\" y=\"{laneTop[track] - 3}\" fill=\"#555\">{WebUtility.HtmlEncode(name)}</text>"));
            foreach (var (call, start, end, track) in _bars)
            {
                double x = left + (start - StartMicroseconds) * scale;
                double w = Math.Max((end - start) * scale, 0.5);
                int by = laneTop[track] + call.Depth * RowHeight;
                string label = call.Path.Length == 0 ? call.ModuleType : call.Path;
                string tip = $"{label} ({call.ModuleType}) call {call.CallIndex}: {Format(end - start)}"
                    + (call.Outputs.Count > 0 ? " → " + string.Join(", ", call.Outputs.Select(o => o.ShapeText)) : "");
                sb.Append(Inv($"<g><title>{WebUtility.HtmlEncode(tip)}</title><rect x=\"{x:0.##}\" y=\"{by}\" width=\"{w:0.##}\" height=\"{RowHeight - 2}\" fill=\"{Color(call)}\" stroke=\"#fff\" stroke-width=\"0.5\"/>"));
                int chars = (int)((w - 4) / 6.6);
                if (chars >= 3)
                {
                    string text = label.Length <= chars ? label : label.Substring(0, chars - 1) + "…";
                    sb.Append(Inv($"<text x=\"{x + 2:0.##}\" y=\"{by + RowHeight - 6}\" fill=\"#000\">{WebUtility.HtmlEncode(text)}</text>"));
                }
                sb.Append("</g>");
            }
            foreach (var (sp, start, end, track, depth) in _spans)
            {
                double x = left + (start - StartMicroseconds) * scale;
                double w = Math.Max((end - start) * scale, 0.5);
                int by = laneTop[track] + depth * RowHeight;
                string tip = $"{sp.Name} '{sp.Path}' {sp.Bytes:N0} bytes: {Format(end - start)}";
                string fill = sp.Name switch { "offload.prefetch" => "#54a24b", "offload.wait" => "#e45756", _ => "#4c78a8" };
                sb.Append(Inv($"<g><title>{WebUtility.HtmlEncode(tip)}</title><rect x=\"{x:0.##}\" y=\"{by}\" width=\"{w:0.##}\" height=\"{RowHeight - 2}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"0.5\"/>"));
                int chars = (int)((w - 4) / 6.6);
                if (chars >= 3)
                {
                    string label = sp.Name + " " + sp.Path;
                    string text = label.Length <= chars ? label : label.Substring(0, chars - 1) + "…";
                    sb.Append(Inv($"<text x=\"{x + 2:0.##}\" y=\"{by + RowHeight - 6}\" fill=\"#fff\">{WebUtility.HtmlEncode(text)}</text>"));
                }
                sb.Append("</g>");
            }
            sb.Append("</svg>");
            return sb.ToString();
        }

        /// <summary>Writes <see cref="ToSvg"/> to <paramref name="path"/>.</summary>
        public void Save(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("Pass a file path such as \"timeline.svg\".", nameof(path));
            File.WriteAllText(path, ToSvg());
        }

        /// <summary>The SVG, for notebook display (the notebook extension registers it as the HTML formatter).</summary>
        public string ToHtml() => "<div>" + ToSvg() + "</div>";

        private static string Format(double us) => us >= 1000 ? Inv($"{us / 1000:0.###} ms") : Inv($"{us:0.#} µs");

        private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

        /// <summary>A warm colour per module type (stable across runs), failed calls red, backward blue.</summary>
        private static string Color(ModuleCallRecord call)
        {
            if (call.Failed) return "#d62728";
            uint h = 2166136261;
            foreach (char ch in call.ModuleType) h = (h ^ ch) * 16777619;
            if (call.Phase == CallPhase.Backward) return $"hsl({200 + h % 40},70%,{60 + h % 15}%)";
            return $"hsl({h % 50},85%,{55 + (h >> 8) % 20}%)";
        }

        /// <inheritdoc />
        public override string ToString() => $"Timeline({Count} calls, {Format(EndMicroseconds - StartMicroseconds)})";
    }
}
