using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using NUnit.Framework;
using OpenTelemetry;
using OpenTelemetry.Trace;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>The ActivitySource spans, seen through the real OpenTelemetry SDK and its in-memory exporter.</summary>
    [NonParallelizable]
    public class OpenTelemetryTests
    {
        [Test(Description = "One span per module call, parented along the call tree, with the documented torchhooks.* tags")]
        public void SpansFollowTheCallTree()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(5, 3);
            var exported = new List<Activity>();
            using (var provider = Sdk.CreateTracerProviderBuilder().AddSource(TorchHooksTelemetry.ActivitySourceName, "TestApp").AddInMemoryExporter(exported).Build())
            {
                using var app = new ActivitySource("TestApp");
                using (var stepSpan = app.StartActivity("step"))
                {
                    using var y = model.call(x);
                }
            }
            var spans = exported.Where(a => a.Source.Name == TorchHooksTelemetry.ActivitySourceName).ToList();
            Assert.That(spans.Select(s => s.DisplayName).OrderBy(n => n),
                Is.EqualTo(new[] { "forward <root>", "forward body", "forward body.lin", "forward body.relu", "forward head", "forward shared", "forward shared" }));
            var root = spans.Single(s => s.DisplayName == "forward <root>");
            var step = exported.Single(a => a.DisplayName == "step");
            Assert.That(root.ParentSpanId, Is.EqualTo(step.SpanId), "the model's span is a child of the caller's span");
            Assert.That(root.TraceId, Is.EqualTo(step.TraceId));
            var body = spans.Single(s => s.DisplayName == "forward body");
            Assert.That(body.ParentSpanId, Is.EqualTo(root.SpanId));
            Assert.That(spans.Single(s => s.DisplayName == "forward body.lin").ParentSpanId, Is.EqualTo(body.SpanId));
            Assert.That(spans.Where(s => s.DisplayName == "forward shared").All(s => s.ParentSpanId == root.SpanId));
            Assert.That(spans.All(s => s.Kind == ActivityKind.Internal));

            var lin = spans.Single(s => s.DisplayName == "forward body.lin");
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.ModulePath), Is.EqualTo("body.lin"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.ModuleType), Is.EqualTo("Linear"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.CallIndex), Is.EqualTo(0));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.Phase), Is.EqualTo("forward"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.Training), Is.EqualTo(true));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.InputShapes), Is.EqualTo("[5, 3]"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.OutputShapes), Is.EqualTo("[5, 4]"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.OutputDtypes), Is.EqualTo("Float32"));
            Assert.That(lin.GetTagItem(TorchHooksTelemetry.Device), Is.EqualTo("cpu"));
            Assert.That(spans.Where(s => s.DisplayName == "forward shared").Select(s => s.GetTagItem(TorchHooksTelemetry.CallIndex)), Is.EquivalentTo(new object[] { 0, 1 }));

            // The provider is gone: nobody listens, and the next facade call takes the fast path again.
            using (var y = model.call(x)) { }
            Assert.That(TracingConcern.Instance.IsActiveEverywhere, Is.False);
        }

        [Test(Description = "A failing call's spans end with status Error")]
        public void FailedCallSpanHasErrorStatus()
        {
            var model = new TraceNet().WithHooks();
            using var bad = randn(1, 7);
            var exported = new List<Activity>();
            using (var provider = Sdk.CreateTracerProviderBuilder().AddSource(TorchHooksTelemetry.ActivitySourceName).AddInMemoryExporter(exported).Build())
            {
                Assert.That(() => model.call(bad), Throws.Exception);
            }
            Assert.That(exported.Select(a => a.DisplayName), Is.EquivalentTo(new[] { "forward body.lin", "forward body", "forward <root>" }));
            Assert.That(exported.All(a => a.Status == ActivityStatusCode.Error));
            Assert.That(Activity.Current, Is.Null, "the spans are stopped, Activity.Current restored");
        }

        [Test(Description = "Nothing is done when nobody listens: no span, the concern inactive")]
        public void NoListenerNoSpans()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(1, 3);
            var started = 0;
            using var listener = new ActivityListener { ShouldListenTo = s => s.Name == "SomethingElse", ActivityStarted = _ => started++ };
            ActivitySource.AddActivityListener(listener);
            using (var y = model.call(x)) { }
            Assert.That(TracingConcern.Source.HasListeners(), Is.False);
            Assert.That(TracingConcern.Instance.IsActiveEverywhere, Is.False);
            Assert.That(started, Is.EqualTo(0));
        }
    }
}
