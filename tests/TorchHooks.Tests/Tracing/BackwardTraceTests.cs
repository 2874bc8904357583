using System;
using System.Linq;
using System.Text.Json;
using NUnit.Framework;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>Backward timings per module (TracerOptions.Backward): spans on the backward track, nested, and no change when no tracer asks.</summary>
    public class BackwardTraceTests
    {
        private static bool BackwardConcernEverywhere => (TorchHooks.CallPath.ConcernsActiveEverywhere & (1 << BackwardHooksConcern.Instance.Slot)) != 0;

        [Test(Description = "With TracerOptions.Backward, each module's backward is a Backward record on the thread's backward track; the track nests (root encloses children, reverse order)")]
        public void BackwardSpansNestOnTheBackwardTrack()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(5, 3).requires_grad_(true);
            using var trace = model.Trace(new TracerOptions { Backward = true });
            using (var y = model.call(x))
            using (var loss = y.sum())
                loss.backward();
            trace.Stop();
            var calls = trace.Calls;
            var forward = calls.Where(c => c.Phase == CallPhase.Forward).ToList();
            var backward = calls.Where(c => c.Phase == CallPhase.Backward).ToList();
            Assert.That(forward.Select(c => c.Path), Is.EqualTo(new[] { "", "body", "body.lin", "body.relu", "shared", "shared", "head" }));
            // Gradients flow from the output back: the module that ran last ends its backward first.
            Assert.That(backward.Select(c => (c.Path, c.CallIndex)), Is.EqualTo(new[]
                { ("head", 0), ("shared", 1), ("shared", 0), ("body.relu", 0), ("body.lin", 0), ("body", 0), ("", 0) }));
            Assert.That(backward.All(c => c.Finished && c.ThreadId == Environment.CurrentManagedThreadId && c.Duration > TimeSpan.Zero));
            var root = backward.Single(c => c.Path == "");
            foreach (var c in backward.Where(c => c.Path != ""))
                Assert.That(c.Start >= root.Start && c.Start + c.Duration <= root.Start + root.Duration, $"{c.Path} lies within the root's backward");
            var body = backward.Single(c => c.Path == "body");
            foreach (var c in backward.Where(c => c.Path.StartsWith("body.", StringComparison.Ordinal)))
                Assert.That(c.Start >= body.Start && c.Start + c.Duration <= body.Start + body.Duration, $"{c.Path} lies within body's backward");
            // The backward of a module starts after its forward ended.
            Assert.That(backward.Min(c => c.Start), Is.GreaterThan(forward.Max(c => c.Start + c.Duration)));
            // Gradient shapes: grad_output is the forward output's shape, grad_input the forward input's.
            var head = backward.Single(c => c.Path == "head");
            Assert.That(head.Inputs.Single().Shape, Is.EqualTo(new long[] { 5, 2 }));
            Assert.That(head.Outputs.Single().Shape, Is.EqualTo(new long[] { 5, 4 }));
            Assert.That(root.Outputs.Single().Shape, Is.EqualTo(new long[] { 5, 3 }));

            var json = JsonDocument.Parse(trace.ToChromeTrace());
            var events = json.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() == "X").ToList();
            var back = events.Where(e => e.GetProperty("cat").GetString() == "module.backward").ToList();
            Assert.That(back, Has.Count.EqualTo(7));
            Assert.That(back.All(e => e.GetProperty("tid").GetInt32() == Environment.CurrentManagedThreadId + ChromeTrace.BackwardTrackOffset));
            Assert.That(back.Any(e => e.TryGetProperty("args", out var a) && a.TryGetProperty("clamped", out _)), Is.False, "backward spans nest without clamping");
            var names = json.RootElement.GetProperty("traceEvents").EnumerateArray()
                .Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
                .Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToList();
            Assert.That(names.Count(n => n!.EndsWith("(backward)", StringComparison.Ordinal)), Is.EqualTo(1));
            ChromeTraceTests.AssertStrictNesting(json);
        }

        [Test(Description = "Tracing backward leaves gradients unchanged; modules whose inputs need no grad have no backward span")]
        public void GradientsUnchangedAndNoSpanWithoutInputGrad()
        {
            using var x = randn(4, 3);
            var plain = new TraceNet();
            var traced = new TraceNet();
            traced.load_state_dict(plain.state_dict());
            var model = traced.WithHooks();
            using (var y = plain.call(x)) using (var loss = y.sum()) loss.backward();
            using (var trace = model.Trace(new TracerOptions { Backward = true }))
            {
                using (var y = model.call(x)) using (var loss = y.sum()) loss.backward();
                var backward = trace.Calls.Where(c => c.Phase == CallPhase.Backward).Select(c => c.Path).ToList();
                // x needs no grad: the root, body and body.lin get no input node, hence no span (documented).
                Assert.That(backward, Is.EqualTo(new[] { "head", "shared", "shared", "body.relu" }));
            }
            foreach (var (name, p) in plain.named_parameters())
                Assert.That(p.grad!.allclose(traced.get_parameter(name)!.grad!), $"grad of {name}");
        }

        [Test(Description = "Without a tracer that asks for backward timings the backward concern stays off (PyTorch semantics unchanged); a forward-only tracer records no backward")]
        public void NoBackwardWrappingUnlessAsked()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3).requires_grad_(true);
            Assert.That(BackwardConcernEverywhere, Is.False);
            using (var trace = model.Trace())
            {
                Assert.That(BackwardConcernEverywhere, Is.False);
                using (var y = model.call(x)) using (var loss = y.sum()) loss.backward();
                Assert.That(trace.Calls.All(c => c.Phase == CallPhase.Forward));
            }
            using (model.Trace(new TracerOptions { Backward = true }))
                Assert.That(BackwardConcernEverywhere, Is.True);
            Assert.That(BackwardConcernEverywhere, Is.False, "disposing the tracer switches the wrapping off");
        }

        [Test(Description = "Backward-traced training steps keep the live-tensor count flat")]
        public void BackwardTracedLoopStaysFlat()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(4, 3).requires_grad_(true);
            using var trace = model.Trace(new TracerOptions { Backward = true, MaxCalls = 500 });
            long before = 0;
            for (int step = 0; step < 300; step++)
            {
                using (var y = model.call(x)) using (var loss = y.sum()) loss.backward();
                if (step == 49)
                {
                    GC.Collect(); GC.WaitForPendingFinalizers();
                    before = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                }
            }
            GC.Collect(); GC.WaitForPendingFinalizers();
            Assert.That(TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.LessThanOrEqualTo(0));
        }
    }
}

namespace TorchHooks.Tests.Tracing
{
    /// <summary>Gradients in the activation cache (CacheOptions.Gradients, TransformerLens' incl_bwd).</summary>
    public class CacheGradientTests
    {
        [Test(Description = "TransformerLens run_with_cache(incl_bwd=True): the gradient w.r.t. each selected module's output is cached as 'path:grad', per call, owned by the cache")]
        public void GradientsAreCached()
        {
            var net = new TraceNet();
            var model = net.WithHooks();
            using var x = randn(5, 3);   // needs no grad: body.lin has no input node, its output gradient is still cached
            using var cache = model.CacheActivations(new CacheOptions { Paths = new[] { "body.lin", "shared", "head" }, Gradients = true });
            using (var y = model.call(x))
            using (var loss = y.sum())
                loss.backward();
            cache.Stop();
            Assert.That(cache.Keys, Is.EquivalentTo(new[] { "body.lin", "shared", "shared#1", "head", "head:grad", "shared:grad#1", "shared:grad", "body.lin:grad" }));
            Assert.That(cache["head:grad"].allclose(ones(5, 2)), "d sum(y) / d y is ones");
            // shared's second output h3 feeds head through tanh: d loss / d h3 = (1 - tanh(h3)^2) * (ones @ W_head).
            using (no_grad())
            {
                var h3 = cache["shared#1"];   // owned by the cache
                using var expected = (1 - tanh(h3).pow(2)) * ones(5, 2).matmul(net.head.weight!);
                Assert.That(cache["shared:grad#1"].allclose(expected, rtol: 1e-5, atol: 1e-6));
            }
            Assert.That(cache["body.lin:grad"].shape, Is.EqualTo(new long[] { 5, 4 }));
            Assert.That(cache.Of("head").Single(e => e.Kind == ActivationKind.Gradient).Key, Is.EqualTo("head:grad"));
            Assert.That((TorchHooks.CallPath.ConcernsActiveEverywhere & (1 << BackwardHooksConcern.Instance.Slot)) == 0, "a stopped cache switches the wrapping off");
        }
    }
}
