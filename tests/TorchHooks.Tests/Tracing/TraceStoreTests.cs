using System;
using System.Linq;
using System.Runtime.CompilerServices;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>The tracer's compact storage: tensor details read directly, every rank and arity, Clear mid-call, and no lifetime coupling.</summary>
    public class TraceStoreTests
    {
        private sealed class Identity : nn.Module<Tensor, Tensor>
        {
            public Identity() : base("Identity") { }
            public override Tensor forward(Tensor x) => x.alias();
        }

        [Test(Description = "Shapes of every rank (0 to 7, inline and beyond), dtypes and grad flags are recorded as TorchSharp reports them")]
        public void EveryRankAndDtype()
        {
            var model = new Identity().WithHooks();
            using var trace = model.Trace();
            var tensors = new[]
            {
                tensor(3.5f), zeros(7), zeros(new long[] { 2, 3 }, ScalarType.Float64), ones(new long[] { 1, 2, 3, 4 }, ScalarType.Int32),
                zeros(new long[] { 2, 1, 3, 1, 2 }, ScalarType.BFloat16), zeros(new long[] { 1, 2, 1, 2, 1, 2, 3 }).requires_grad_(true),
            };
            foreach (var t in tensors) { using var y = model.call(t); }
            var calls = trace.Calls;
            Assert.That(calls, Has.Count.EqualTo(tensors.Length));
            for (int i = 0; i < tensors.Length; i++)
            {
                var info = calls[i].Inputs.Single();
                Assert.That(info.Shape, Is.EqualTo(tensors[i].shape), $"tensor {i}");
                Assert.That(info.Dtype, Is.EqualTo(tensors[i].dtype));
                Assert.That(info.RequiresGrad, Is.EqualTo(tensors[i].requires_grad));
                Assert.That(info.Device, Is.EqualTo("cpu"));
                Assert.That(info, Is.EqualTo(new TensorInfo(tensors[i])));
                Assert.That(calls[i].Outputs.Single().Shape, Is.EqualTo(tensors[i].shape));
            }
            foreach (var t in tensors) t.Dispose();
        }

        [Test(Description = "Tuple inputs and outputs: every tensor of the tuple, in order")]
        public void TuplesOfTensors()
        {
            var model = new AllArities().WithHooks();
            using var x = randn(2, 3);
            using var trace = model.Trace();
            using (var y = model.call(x)) { }
            var split = trace.CallsOf("split").Single();
            Assert.That(split.Outputs.Select(o => o.Shape), Is.EqualTo(new[] { new long[] { 2, 3 }, new long[] { 2, 3 } }));
            var add6 = trace.CallsOf("add6").Single();
            Assert.That(add6.Inputs, Has.Count.EqualTo(6));
        }

        [Test(Description = "Clear() while a call is under way: the call ends unseen, later calls are numbered from 0")]
        public void ClearMidCall()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            using var trace = model.Trace();
            using var hook = model["shared"].register_forward_pre_hook((m, a) => { trace.Clear(); return null; });
            using (var y = model.call(x)) { }
            var calls = trace.Calls;
            // Cleared in each of shared's two calls (after tracing saw them begin): only head began after the last clear.
            Assert.That(calls.Select(c => c.Path), Is.EqualTo(new[] { "head" }));
            Assert.That(calls.Select(c => c.Id), Is.EqualTo(new[] { 0 }));
            Assert.That(calls.All(c => c.Finished && c.ParentId == -1));
        }

        [Test(Description = "Many calls span several storage chunks; records are built once and reused; a stopped tracer is not kept alive by the model")]
        public void ChunksRecordsAndLifetime()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            var weak = TraceMany(model, x, out int count);
            Assert.That(count, Is.EqualTo(7 * 500));
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Assert.That(weak.IsAlive, Is.False, "the model's nodes must not keep a stopped tracer (and its memory) alive");
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static WeakReference TraceMany(HookedModule<Tensor, Tensor> model, Tensor x, out int count)
        {
            var trace = ModuleTracer.Start();
            for (int i = 0; i < 500; i++) { using var y = model.call(x); }
            trace.Stop();
            var calls = trace.Calls;
            count = calls.Count;
            Assert.That(calls.Select(c => c.Id), Is.EqualTo(Enumerable.Range(0, count)));
            Assert.That(calls[count - 1].Path, Is.EqualTo("head"));
            Assert.That(calls[count - 1].Inputs.Single().Shape, Is.EqualTo(new long[] { 2, 4 }));
            Assert.That(trace.Calls[42], Is.SameAs(calls[42]), "a finished call's record is built once");
            return new WeakReference(trace);
        }
    }
}
