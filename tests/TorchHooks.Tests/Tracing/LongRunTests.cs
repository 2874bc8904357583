using System;
using System.Diagnostics;
using System.Linq;
using System.Xml.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    public class LongRunTests
    {
        [Test(Description = "A traced and cached loop of 10,000 steps keeps the live-tensor count and managed memory flat")]
        [CancelAfter(120_000)]
        public void TracedAndCachedLoopStaysFlat()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(4, 3);
            using var trace = model.Trace(new TracerOptions { MaxCalls = 1_000 });
            long tensorsBefore = 0, bytesBefore = 0;
            var watch = Stopwatch.StartNew();
            for (int step = 0; step < 10_000; step++)
            {
                var (y, cache) = model.RunWithCache(x, new CacheOptions { Paths = new[] { "shared", "head" } });
                using (y) using (cache)
                    if (cache.Count != 3) Assert.Fail($"step {step}: {cache.Count} tensors cached");
                if (step == 999)
                {
                    GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
                    tensorsBefore = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                    bytesBefore = GC.GetTotalMemory(true);
                }
            }
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long tensorsAfter = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            long bytesAfter = GC.GetTotalMemory(true);
            TestContext.Out.WriteLine($"10,000 steps in {watch.Elapsed.TotalSeconds:0.0} s; live tensors {tensorsBefore} -> {tensorsAfter}; managed {bytesBefore:#,0} -> {bytesAfter:#,0} bytes; trace kept {trace.Calls.Count}, dropped {trace.Dropped}");
            Assert.That(tensorsAfter - tensorsBefore, Is.LessThanOrEqualTo(0));
            Assert.That(bytesAfter - bytesBefore, Is.LessThan(512 * 1024), "managed memory grew");
            Assert.That(trace.Calls.Count, Is.EqualTo(1_000));
            Assert.That(trace.Dropped, Is.EqualTo(10_000 * 7 - 1_000));
        }

        [Test(Description = "The timeline is a well-formed SVG with one bar per call, nested by depth")]
        public void TimelineSvg()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(4, 3);
            using var trace = model.Trace();
            using (var y = model.call(x)) { }
            var timeline = trace.ToTimeline();
            Assert.That(timeline.Count, Is.EqualTo(7));
            var svg = XDocument.Parse(timeline.ToSvg());
            XNamespace ns = "http://www.w3.org/2000/svg";
            var rects = svg.Descendants(ns + "rect").ToList();
            Assert.That(rects, Has.Count.EqualTo(7));
            var root = rects[0];
            double rootX = (double)root.Attribute("x")!, rootW = (double)root.Attribute("width")!;
            foreach (var r in rects.Skip(1))
            {
                Assert.That((double)r.Attribute("x")!, Is.GreaterThanOrEqualTo(rootX - 0.01));
                Assert.That((double)r.Attribute("x")! + (double)r.Attribute("width")!, Is.LessThanOrEqualTo(rootX + rootW + 0.6));
                Assert.That((int)r.Attribute("y")!, Is.GreaterThan((int)root.Attribute("y")!));
            }
            Assert.That(svg.Descendants(ns + "title").Select(t => t.Value), Has.Some.StartsWith("body.lin (Linear) call 0"));
            Assert.That(timeline.ToHtml(), Does.StartWith("<div><svg"));
        }
    }
}
