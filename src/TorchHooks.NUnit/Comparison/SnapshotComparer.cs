using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;

namespace TorchHooks.NUnit
{
    /// <summary>What to compare and how closely.</summary>
    internal sealed class CompareOptions
    {
        public Tolerances Tolerances { get; } = new();
        /// <summary>Compare outputs by SHA-256 of their bytes instead of by fingerprint within tolerances.</summary>
        public bool Exact { get; set; }
        /// <summary>Path patterns whose calls (and the calls inside them) are left out of the comparison.</summary>
        public List<PathPattern> Ignore { get; } = new();
    }

    /// <summary>
    /// A path pattern: <c>*</c> matches within one path segment, <c>**</c> across segments; a pattern matches a path
    /// and everything below it (<c>encoder</c> ignores <c>encoder</c>, <c>encoder.0</c>, ...).
    /// </summary>
    internal sealed class PathPattern
    {
        private readonly Regex _regex;

        public PathPattern(string pattern)
        {
            Text = pattern;
            string body = Regex.Escape(pattern).Replace(@"\*\*", "\u0001").Replace(@"\*", "[^.]*").Replace("\u0001", ".*");
            _regex = new Regex("^(?:" + body + @")(?:\..*)?$", RegexOptions.CultureInvariant);
        }

        public string Text { get; }

        public bool Matches(string path) => _regex.IsMatch(path);
    }

    /// <summary>The first difference in call order.</summary>
    internal sealed record Divergence(string Path, string Type, int CallNumber, int CallCount, string Field, string Expected, string Actual, string? Note = null);

    internal sealed record Comparison(Divergence? First, int DifferingCalls, int Calls, IReadOnlyList<string> Diff)
    {
        public bool Matches => First is null;
    }

    /// <summary>
    /// Compares two snapshots. The first divergence is found by walking both passes event by event in the order
    /// they happened — a call begins (path, type, parameters, inputs), a call returns (outputs) — so it names the
    /// module where a change shows first: a resized layer at its parameters, a changed weight at that layer's
    /// output, an inserted module where it is called, not the root whose output merely carries the change.
    /// </summary>
    internal static class SnapshotComparer
    {
        private enum Kind { Begin, Return }

        private readonly record struct Event(Kind Kind, int Index);

        public static Comparison Compare(ModelSnapshot expected, ModelSnapshot actual, CompareOptions options)
        {
            var e = Keep(expected.Calls, options);
            var a = Keep(actual.Calls, options);
            var first = FirstDivergence(expected, actual, e, a, options);
            var (diff, differing) = CompactDiff(e, a, options);
            if (first != null && differing == 0) differing = 1;   // a header-only difference (autocast, training) is the root's
            return new Comparison(first, differing, e.Count, diff);
        }

        private static List<CallRecord> Keep(List<CallRecord> calls, CompareOptions options)
            => calls.Where(c => !options.Ignore.Any(p => p.Matches(c.Path))).ToList();

        private static List<Event> Events(List<CallRecord> calls)
        {
            var events = new List<Event>();
            var open = new Stack<int>();
            for (int i = 0; i < calls.Count; i++)
            {
                while (open.Count > 0 && calls[open.Peek()].Depth >= calls[i].Depth) events.Add(new Event(Kind.Return, open.Pop()));
                events.Add(new Event(Kind.Begin, i));
                open.Push(i);
            }
            while (open.Count > 0) events.Add(new Event(Kind.Return, open.Pop()));
            return events;
        }

        private static Divergence? FirstDivergence(ModelSnapshot es, ModelSnapshot acs, List<CallRecord> e, List<CallRecord> a, CompareOptions options)
        {
            if (es.Format != acs.Format)
                return new Divergence("<root>", es.Model, 0, e.Count, "format", es.Format, acs.Format, "the snapshot was written by another version of TorchHooks.NUnit: re-record it");
            var ee = Events(e);
            var ae = Events(a);
            for (int k = 0; k < Math.Max(ee.Count, ae.Count); k++)
            {
                if (k >= ae.Count)
                {
                    var missing = e[ee[k].Index];
                    return At(missing, ee[k].Index, e.Count, "call", Call(missing), "(not called)", "this run made fewer calls");
                }
                if (k >= ee.Count)
                {
                    var extra = a[ae[k].Index];
                    return At(extra, ae[k].Index, a.Count, "call", "(not called)", Call(extra), "this run makes a call the snapshot does not have");
                }
                var (x, y) = (ee[k], ae[k]);
                var (ex, ac) = (e[x.Index], a[y.Index]);
                if (x.Kind != y.Kind)
                {
                    return x.Kind == Kind.Return
                        ? At(ac, y.Index, a.Count, "call", $"{ex.Display} returns", $"{ex.Display} calls {Call(ac)}", "a module was inserted here")
                        : At(ex, x.Index, e.Count, "call", $"calls {Call(ex)}", $"{ac.Display} returns without it", "a module was removed here");
                }
                if (x.Kind == Kind.Begin && !Same(ex, ac))
                {
                    if (ex.Path == ac.Path && ex.Call == ac.Call)
                        return At(ex, x.Index, e.Count, "type", ex.Type, ac.Type);
                    if (!e.Any(c => Same(c, ac)))
                        return At(ac, y.Index, a.Count, "call", $"calls {Call(ex)}", $"calls {Call(ac)}", "a module was inserted here");
                    if (!a.Any(c => Same(c, ex)))
                        return At(ex, x.Index, e.Count, "call", $"calls {Call(ex)}", $"calls {Call(ac)}", "a module was removed here");
                    return At(ac, y.Index, a.Count, "call order", $"calls {Call(ex)}", $"calls {Call(ac)}", "the call order changed");
                }
                var d = x.Kind == Kind.Begin
                    ? BeginField(ex, ac) ?? (x.Index == 0 && y.Index == 0 ? HeaderField(es, acs) : null)
                    : ReturnField(ex, ac, options);
                if (d is { } f) return At(ex, x.Index, e.Count, f.Field, f.Expected, f.Actual, f.Note);
            }
            return null;
        }

        private static Divergence At(CallRecord call, int index, int count, string field, string expected, string actual, string? note = null)
            => new(call.Display, call.Type, index + 1, count, field, expected, actual, note);

        private static string Call(CallRecord c) => $"{c.Display} ({c.Type})";

        private readonly record struct FieldDiff(string Field, string Expected, string Actual, string? Note = null);

        private static FieldDiff? HeaderField(ModelSnapshot e, ModelSnapshot a)
        {
            if (e.Autocast != a.Autocast) return new FieldDiff("autocast", e.Autocast, a.Autocast);
            if (e.Training != a.Training) return new FieldDiff("training", e.Training ? "train()" : "eval()", a.Training ? "train()" : "eval()");
            return null;
        }

        private static FieldDiff? BeginField(CallRecord e, CallRecord a)
        {
            if (e.Params != a.Params) return new FieldDiff("params", e.Params.ToString(), a.Params.ToString(), "the module's own parameter count");
            if (e.ParamDtype != a.ParamDtype) return new FieldDiff("paramDtype", e.ParamDtype ?? "(none)", a.ParamDtype ?? "(none)");
            if (e.Autocast != a.Autocast) return new FieldDiff("autocast", e.Autocast ?? "(as the pass)", a.Autocast ?? "(as the pass)");
            if (e.Inputs.Count != a.Inputs.Count) return new FieldDiff("inputs", TensorText.Join(e.Inputs), TensorText.Join(a.Inputs));
            for (int i = 0; i < e.Inputs.Count; i++)
                if (e.Inputs[i] != a.Inputs[i]) return new FieldDiff($"inputs[{i}]", e.Inputs[i], a.Inputs[i]);
            return null;
        }

        private static FieldDiff? ReturnField(CallRecord e, CallRecord a, CompareOptions options)
        {
            if (e.Outputs is null || a.Outputs is null)
                return e.Outputs is null && a.Outputs is null ? null
                    : new FieldDiff("outputs", e.Outputs is null ? "(not recorded)" : $"{e.Outputs.Count} tensor(s)", a.Outputs is null ? "(not recorded)" : $"{a.Outputs.Count} tensor(s)");
            if (e.Outputs.Count != a.Outputs.Count)
                return new FieldDiff("outputs", TensorText.Join(e.Outputs.Select(o => o.Tensor)), TensorText.Join(a.Outputs.Select(o => o.Tensor)));
            for (int i = 0; i < e.Outputs.Count; i++)
            {
                var (eo, ao) = (e.Outputs[i], a.Outputs[i]);
                string field = $"outputs[{i}]";
                if (eo.Tensor != ao.Tensor) return new FieldDiff(field, eo.Tensor, ao.Tensor, "dtype or shape");
                if (options.Exact)
                {
                    if (eo.Sha256 != ao.Sha256) return new FieldDiff(field + ".sha256", eo.Sha256 ?? "(none)", ao.Sha256 ?? "(none)", "exact mode: the bytes differ");
                    continue;
                }
                string dtype = Fingerprint.DtypeOf(eo.Tensor);
                double tol = options.Tolerances.For(dtype);
                var numbers = new (string Name, double? E, double? A)[] { ("mean", eo.Mean, ao.Mean), ("std", eo.Std, ao.Std), ("min", eo.Min, ao.Min), ("max", eo.Max, ao.Max) }
                    .Concat((eo.Samples ?? new()).Select(s => ($"samples[{s.Key}]", (double?)s.Value, ao.Samples != null && ao.Samples.TryGetValue(s.Key, out var v) ? v : (double?)null)));
                foreach (var (name, ev, av) in numbers)
                {
                    if (ev is null && av is null) continue;
                    if (ev is null || av is null || !Tolerances.Close(ev.Value, av.Value, tol))
                    {
                        string note = ev is { } x && av is { } y
                            ? $"difference {TensorText.Number(Math.Abs(y - x))}; tolerance for {dtype}: {TensorText.Number(tol)} × max(1, |expected|)"
                            : "";
                        return new FieldDiff($"{field}.{name}", ev is { } ex ? ex.ToString("R") : "(none)", av is { } ac ? ac.ToString("R") : "(none)", note);
                    }
                }
            }
            return null;
        }

        // ---- compact diff ----------------------------------------------------------------------

        private const int MaxDiffLines = 24;

        private static (IReadOnlyList<string> Lines, int Differing) CompactDiff(List<CallRecord> e, List<CallRecord> a, CompareOptions options)
        {
            // Align the two call lists by (path, call index, type): longest common subsequence.
            int n = e.Count, m = a.Count;
            var lcs = new int[n + 1, m + 1];
            for (int i = n - 1; i >= 0; i--)
                for (int j = m - 1; j >= 0; j--)
                    lcs[i, j] = Same(e[i], a[j]) ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);

            var rows = new List<(char Mark, string Text)>();
            int differing = 0;
            for (int i = 0, j = 0; i < n || j < m;)
            {
                if (i < n && j < m && Same(e[i], a[j]))
                {
                    if (BeginField(e[i], a[j]) is null && ReturnField(e[i], a[j], options) is null) rows.Add((' ', Line(e[i])));
                    else { rows.Add(('-', Line(e[i]))); rows.Add(('+', Line(a[j]))); differing++; }
                    i++; j++;
                }
                // On a tie the snapshot's row first, as diff does: "- GELU" before "+ ReLU".
                else if (i < n && (j >= m || lcs[i + 1, j] >= lcs[i, j + 1])) { rows.Add(('-', Line(e[i]))); i++; differing++; }
                else { rows.Add(('+', Line(a[j]))); j++; differing++; }
            }

            // Show the changed rows with one unchanged row of context on each side; fold the rest.
            var keep = new bool[rows.Count];
            for (int r = 0; r < rows.Count; r++)
                if (rows[r].Mark != ' ')
                    for (int c = Math.Max(0, r - 1); c <= Math.Min(rows.Count - 1, r + 1); c++) keep[c] = true;
            var lines = new List<string>();
            int folded = 0;
            for (int r = 0; r < rows.Count; r++)
            {
                if (!keep[r]) { folded++; continue; }
                if (folded > 0) { lines.Add($"    ... {folded} unchanged call{(folded == 1 ? "" : "s")}"); folded = 0; }
                lines.Add($"  {rows[r].Mark} {rows[r].Text}");
            }
            if (folded > 0) lines.Add($"    ... {folded} unchanged call{(folded == 1 ? "" : "s")}");
            if (lines.Count > MaxDiffLines)
            {
                int more = lines.Count - MaxDiffLines;
                lines = lines.Take(MaxDiffLines).ToList();
                lines.Add($"    ... {more} more line{(more == 1 ? "" : "s")} (compare the JSON files for all of it)");
            }
            return (lines, differing);
        }

        private static bool Same(CallRecord e, CallRecord a) => e.Path == a.Path && e.Call == a.Call && e.Type == a.Type;

        /// <summary>One call on one line: <c>fc1 Linear  params 40 float32  float32[4, 4] -> float32[4, 8] mean=… std=…</c>.</summary>
        internal static string Line(CallRecord c)
        {
            var sb = new StringBuilder();
            sb.Append(new string(' ', 2 * c.Depth)).Append(c.Display).Append(' ').Append(c.Type);
            if (c.Params > 0) sb.Append("  params ").Append(c.Params).Append(' ').Append(c.ParamDtype);
            if (c.Autocast != null) sb.Append("  autocast ").Append(c.Autocast);
            sb.Append("  ").Append(TensorText.Join(c.Inputs)).Append(" -> ");
            if (c.Outputs is null) sb.Append("(output not recorded)");
            else sb.Append(string.Join("; ", c.Outputs.Select(o => o.Mean is null ? o.Tensor
                : $"{o.Tensor} mean={TensorText.Number(o.Mean.Value)} std={TensorText.Number(o.Std ?? double.NaN)}")));
            return sb.ToString();
        }
    }
}
