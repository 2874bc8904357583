using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using NUnit.Framework;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>Chrome Trace Event Format: structure, units, metadata and strict nesting per track (Perfetto's rule).</summary>
    public class ChromeTraceTests
    {
        /// <summary>Every X event of a (pid, tid) track lies within the event enclosing it, or after it: no partial overlap.</summary>
        public static void AssertStrictNesting(JsonDocument json)
        {
            var events = json.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() == "X");
            foreach (var track in events.GroupBy(e => (e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32())))
            {
                var open = new Stack<(double Start, double End)>();
                foreach (var e in track.OrderBy(e => e.GetProperty("ts").GetDouble()).ThenByDescending(e => e.GetProperty("dur").GetDouble()))
                {
                    double ts = e.GetProperty("ts").GetDouble(), end = ts + e.GetProperty("dur").GetDouble();
                    Assert.That(e.GetProperty("dur").GetDouble(), Is.GreaterThanOrEqualTo(0));
                    while (open.Count > 0 && open.Peek().End <= ts + 1e-6) open.Pop();
                    if (open.Count > 0)
                        Assert.That(end, Is.LessThanOrEqualTo(open.Peek().End + 1e-6), $"event {e} overlaps its enclosing event on track {track.Key}");
                    open.Push((ts, end));
                }
            }
        }

        [Test(Description = "Complete events in µs with pid/tid/args, process and thread metadata; parents enclose children")]
        public void StructureAndNesting()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(4, 3);
            using var trace = model.Trace(new TracerOptions { Name = "unit test" });
            for (int i = 0; i < 2; i++) { using var y = model.call(x); }
            trace.Stop();
            var path = Path.Combine(Path.GetTempPath(), $"torchhooks-trace-{Guid.NewGuid():N}.json");
            try
            {
                trace.WriteChromeTrace(path);
                using var json = JsonDocument.Parse(File.ReadAllText(path));
                var root = json.RootElement;
                Assert.That(root.GetProperty("displayTimeUnit").GetString(), Is.EqualTo("ms"));
                var events = root.GetProperty("traceEvents").EnumerateArray().ToList();
                var meta = events.Where(e => e.GetProperty("ph").GetString() == "M").ToList();
                Assert.That(meta.Single(e => e.GetProperty("name").GetString() == "process_name").GetProperty("args").GetProperty("name").GetString(), Is.EqualTo("unit test"));
                Assert.That(meta.Any(e => e.GetProperty("name").GetString() == "thread_name" && e.GetProperty("tid").GetInt32() == Environment.CurrentManagedThreadId));
                var complete = events.Where(e => e.GetProperty("ph").GetString() == "X").ToList();
                Assert.That(complete, Has.Count.EqualTo(14));
                foreach (var e in complete)
                {
                    foreach (var key in new[] { "name", "cat", "ts", "dur", "pid", "tid", "args" }) Assert.That(e.TryGetProperty(key, out _), key);
                    Assert.That(e.GetProperty("pid").GetInt32(), Is.EqualTo(Environment.ProcessId));
                }
                var first = complete.First(e => e.GetProperty("name").GetString() == "body.lin");
                var args = first.GetProperty("args");
                Assert.That(args.GetProperty("type").GetString(), Is.EqualTo("Linear"));
                Assert.That(args.GetProperty("inputs")[0].GetString(), Is.EqualTo("[4, 3] Float32 cpu"));
                Assert.That(args.GetProperty("outputs")[0].GetString(), Is.EqualTo("[4, 4] Float32 cpu requires_grad"));
                Assert.That(complete.Count(e => e.GetProperty("name").GetString() == "TraceNet"), Is.EqualTo(2), "the root is named by its type");

                // Units: µs. The records' durations (TimeSpan) agree with dur.
                var rec = trace.Calls.First(c => c.Path == "body.lin");
                Assert.That(first.GetProperty("dur").GetDouble(), Is.EqualTo(rec.Duration.TotalMilliseconds * 1000).Within(1.0));
                Assert.That(first.GetProperty("ts").GetDouble(), Is.EqualTo(rec.Start.TotalMilliseconds * 1000).Within(1.0));

                // Parent encloses child, by id.
                var byId = complete.ToDictionary(e => e.GetProperty("args").GetProperty("id").GetInt32());
                foreach (var e in complete)
                {
                    int parent = e.GetProperty("args").GetProperty("parent").GetInt32();
                    if (parent < 0) continue;
                    var p = byId[parent];
                    Assert.That(e.GetProperty("ts").GetDouble(), Is.GreaterThanOrEqualTo(p.GetProperty("ts").GetDouble()));
                    Assert.That(e.GetProperty("ts").GetDouble() + e.GetProperty("dur").GetDouble(),
                        Is.LessThanOrEqualTo(p.GetProperty("ts").GetDouble() + p.GetProperty("dur").GetDouble() + 1e-6));
                }
                AssertStrictNesting(json);
            }
            finally { File.Delete(path); }
        }

        [Test(Description = "A direct call that threw is finished (failed) at the module's next call; the trace still nests")]
        public void AbandonedCallIsFinishedLater()
        {
            var model = new TraceNet().WithHooks();
            var lin = (TorchSharp.Modules.Linear)model["body.lin"].Module;
            using var trace = model.Trace();
            using var bad = randn(1, 7);
            using var good = randn(1, 3);
            Assert.That(() => lin.call(bad), Throws.Exception);
            Assert.That(trace.Calls.Single().Finished, Is.False, "nothing can finish a direct call that threw until the module is called again");
            using (var y = lin.call(good)) { }
            var calls = trace.Calls;
            Assert.That(calls.Select(c => (c.Failed, c.Finished, c.ParentId)), Is.EqualTo(new[] { (true, true, -1), (false, true, -1) }));
            AssertStrictNesting(JsonDocument.Parse(trace.ToChromeTrace()));
        }
    }
}
