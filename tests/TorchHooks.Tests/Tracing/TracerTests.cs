using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text.Json;
using System.Threading;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>A small tree: seq(lin, relu) → shared twice → tanh → head; the shared Linear is called twice.</summary>
    public sealed class TraceNet : nn.Module<Tensor, Tensor>
    {
        public readonly Sequential body;
        public readonly Linear shared;
        public readonly Linear head;

        public TraceNet() : base("TraceNet")
        {
            body = nn.Sequential(("lin", nn.Linear(3, 4)), ("relu", nn.ReLU()));
            shared = nn.Linear(4, 4);
            head = nn.Linear(4, 2);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var h1 = body.call(x);
            using var h2 = shared.call(h1);
            using var h3 = shared.call(h2);
            using var h4 = tanh(h3);
            return head.call(h4);
        }
    }

    public class TracerTests
    {
        [Test(Description = "The tracer records every module call: path, type, call index, parent and depth, thread, tensors, training, autocast")]
        public void RecordsTheCallTree()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(5, 3);
            ModuleCallRecord[] calls;
            using (var trace = model.Trace())
            {
                using var y = model.call(x);
                calls = trace.Calls.ToArray();
            }
            Assert.That(calls.Select(c => c.Path), Is.EqualTo(new[] { "", "body", "body.lin", "body.relu", "shared", "shared", "head" }));
            Assert.That(calls.Select(c => c.ModuleType), Is.EqualTo(new[] { "TraceNet", "Sequential", "Linear", "ReLU", "Linear", "Linear", "Linear" }));
            Assert.That(calls.Select(c => c.Depth), Is.EqualTo(new[] { 0, 1, 2, 2, 1, 1, 1 }));
            Assert.That(calls.Select(c => c.ParentId), Is.EqualTo(new[] { -1, 0, 1, 1, 0, 0, 0 }));
            Assert.That(calls.Select(c => c.CallIndex), Is.EqualTo(new[] { 0, 0, 0, 0, 0, 1, 0 }));
            Assert.That(calls.Select(c => c.Id), Is.EqualTo(Enumerable.Range(0, 7)));
            Assert.That(calls.All(c => c.Finished && !c.Failed && c.Training && c.AutocastCpu is null));
            Assert.That(calls.All(c => c.ThreadId == Environment.CurrentManagedThreadId));
            Assert.That(calls[0].Inputs.Single().Shape, Is.EqualTo(new long[] { 5, 3 }));
            Assert.That(calls[0].Outputs.Single().Shape, Is.EqualTo(new long[] { 5, 2 }));
            Assert.That(calls[2].Outputs.Single().Dtype, Is.EqualTo(ScalarType.Float32));
            Assert.That(calls[2].Outputs.Single().Device, Is.EqualTo("cpu"));
            Assert.That(calls[2].Outputs.Single().RequiresGrad, Is.True);
            Assert.That(calls[0].Inputs.Single().RequiresGrad, Is.False);
            // Children lie within their parent in time.
            foreach (var c in calls.Where(c => c.ParentId >= 0))
            {
                var p = calls[c.ParentId];
                Assert.That(c.Start, Is.GreaterThanOrEqualTo(p.Start));
                Assert.That(c.Start + c.Duration, Is.LessThanOrEqualTo(p.Start + p.Duration));
            }
        }

        [Test(Description = "Training flag, autocast state (a region and a module's precision policy) and no_grad are recorded")]
        public void RecordsModeAndAutocast()
        {
            var model = new TraceNet().WithHooks();
            model.eval();
            using var policy = model["head"].SetPrecision(PrecisionPolicy.Float32());
            using var x = randn(2, 3);
            using var trace = model.Trace();
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            using (no_grad())
            {
                using var y = model.call(x);
            }
            var calls = trace.Calls;
            Assert.That(calls.All(c => !c.Training));
            Assert.That(calls.Single(c => c.Path == "body.lin").AutocastCpu, Is.EqualTo(ScalarType.BFloat16));
            Assert.That(calls.Single(c => c.Path == "body.lin").Outputs.Single().Dtype, Is.EqualTo(ScalarType.BFloat16));
            Assert.That(calls.Single(c => c.Path == "body.lin").Outputs.Single().RequiresGrad, Is.False);
            Assert.That(calls.Single(c => c.Path == "head").AutocastCpu, Is.Null, "the Float32 policy turns autocast off for head");
        }

        [Test(Description = "Off means free: with no tracer and no listener the tracing concern is inactive everywhere")]
        public void OffMeansInactive()
        {
            Assert.That(TracingConcern.ObserverCount, Is.EqualTo(0));
            Assert.That(TracingConcern.Instance.IsActiveEverywhere, Is.False);
            var model = new TraceNet().WithHooks();
            var trace = model.Trace();
            Assert.That(TracingConcern.Instance.IsActiveEverywhere, Is.True);
            Assert.That(TorchHooks.CallPath.ActiveEverywhere, Is.True);
            trace.Dispose();
            Assert.That(TracingConcern.Instance.IsActiveEverywhere, Is.False);
            Assert.That(TorchHooks.CallPath.ActiveEverywhere, Is.False);
            using var x = randn(1, 3);
            using var y = model.call(x);
            Assert.That(trace.Calls, Is.Empty, "a disposed tracer records nothing");
        }

        [Test(Description = "Filter, model restriction and MaxCalls: a filtered trace re-parents to the nearest recorded ancestor; the bound drops and counts")]
        public void FilterAndBound()
        {
            var model = new TraceNet().WithHooks();
            var other = new TraceNet().WithHooks();
            using var x = randn(1, 3);
            using (var trace = model.Trace(new TracerOptions { Filter = p => p.Module is Linear || p.Path == "" }))
            {
                using var y = model.call(x);
                using var z = other.call(x);
                var calls = trace.Calls;
                Assert.That(calls.Select(c => c.Path), Is.EqualTo(new[] { "", "body.lin", "shared", "shared", "head" }));
                Assert.That(calls.Select(c => c.ParentId), Is.EqualTo(new[] { -1, 0, 0, 0, 0 }));
                Assert.That(calls[1].Depth, Is.EqualTo(1));
            }
            using (var bounded = model.Trace(new TracerOptions { MaxCalls = 10 }))
            {
                for (int i = 0; i < 3; i++) { using var y = model.call(x); }
                Assert.That(bounded.Calls.Count, Is.EqualTo(10));
                Assert.That(bounded.Dropped, Is.EqualTo(11));
                bounded.Clear();
                Assert.That(bounded.Calls, Is.Empty);
                Assert.That(bounded.Dropped, Is.EqualTo(0));
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => model.Trace(new TracerOptions { MaxCalls = 0 }));
            Assert.That(TracingConcern.ObserverCount, Is.EqualTo(0), "a rejected tracer is not left registered");
        }

        [Test(Description = "A call that throws is recorded as failed, ends, and leaves the tree consistent")]
        public void FailedCallsAreRecorded()
        {
            var model = new TraceNet().WithHooks();
            using var bad = randn(1, 7);
            using var trace = model.Trace();
            Assert.That(() => model.call(bad), Throws.Exception);
            var calls = trace.Calls;
            Assert.That(calls.Select(c => c.Path), Is.EqualTo(new[] { "", "body", "body.lin" }));
            Assert.That(calls.All(c => c.Failed && c.Finished && c.Outputs.Count == 0));
            var json = JsonDocument.Parse(trace.ToChromeTrace());
            ChromeTraceTests.AssertStrictNesting(json);
        }

        [Test(Description = "Thread-aware: calls on several threads are recorded on their own thread with their own parents")]
        public void Threads()
        {
            var model = new TraceNet().WithHooks();
            using var trace = model.Trace();
            var threads = Enumerable.Range(0, 3).Select(i => new Thread(() =>
            {
                using var x = randn(2, 3);
                for (int k = 0; k < 5; k++) { using var y = model.call(x); }
            }) { Name = $"worker {i}" }).ToArray();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
            var calls = trace.Calls;
            Assert.That(calls.Count, Is.EqualTo(3 * 5 * 7));
            Assert.That(calls.Select(c => c.ThreadName).Distinct().OrderBy(n => n), Is.EqualTo(new[] { "worker 0", "worker 1", "worker 2" }));
            foreach (var c in calls.Where(c => c.ParentId >= 0))
                Assert.That(calls[c.ParentId].ThreadId, Is.EqualTo(c.ThreadId));
            Assert.That(calls.Count(c => c.ParentId < 0), Is.EqualTo(15));
            ChromeTraceTests.AssertStrictNesting(JsonDocument.Parse(trace.ToChromeTrace()));
        }

        [Test(Description = "Backward records (the hook point for the backward-hooks concern) land on their own track")]
        public void BackwardRecordsHaveTheirOwnTrack()
        {
            var model = new TraceNet().WithHooks();
            using var trace = model.Trace(new TracerOptions { Backward = true });
            using var x = randn(2, 3);
            using (no_grad())
            using (var y = model.call(x)) { }
            long t0 = Stopwatch.GetTimestamp();
            TracingConcern.RecordBackward(model["head"], 0, t0, t0 + 1000, null, null);
            var back = trace.Calls.Last();
            Assert.That(back.Phase, Is.EqualTo(CallPhase.Backward));
            var json = JsonDocument.Parse(trace.ToChromeTrace());
            var events = json.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() == "X").ToList();
            var backEvent = events.Single(e => e.GetProperty("cat").GetString() == "module.backward");
            Assert.That(backEvent.GetProperty("tid").GetInt32(), Is.EqualTo(Environment.CurrentManagedThreadId + ChromeTrace.BackwardTrackOffset));
            ChromeTraceTests.AssertStrictNesting(json);
        }
    }
}
