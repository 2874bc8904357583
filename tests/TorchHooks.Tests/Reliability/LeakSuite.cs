using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using NUnit.Framework;
using TorchHooks.Tests.Autocast;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// Long loops with everything on (global and local hooks, always_call, replacements, hook scopes, precision
    /// policies with float32 input casts): the live-tensor count and managed memory stay flat; wrapped models that
    /// are dropped are collected. Figures: docs/reliability.md.
    /// </summary>
    [TestFixture]
    [Category("Slow")]   // long-run leak checks (a minute here): left out by --filter "TestCategory!=Slow" (README)
    public class LeakSuite
    {
        [SetUp]
        public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

        [TearDown]
        public void LeaveClean() { ModuleHooks.RemoveAll(); AutocastTestState.AssertCleanAndReset(); }

        [Test(Description = "live tensors and managed memory flat over a long loop with everything on")]
        public void Long_loop_with_everything_on_is_flat()
        {
            int calls = Soak.Scale(5_000);
            var model = nn.Sequential(("fc1", nn.Linear(16, 16)), ("norm", nn.LayerNorm(16)), ("fc2", nn.Linear(16, 8)));
            var m = model.WithHooks();
            using var g1 = ModuleHooks.register_module_forward_pre_hook((mod, x) => null);
            using var g2 = ModuleHooks.register_module_forward_hook((mod, x, y) => null, always_call: true);
            using var h1 = m["fc1"].register_forward_pre_hook((mod, x) => x * 1.0);            // replaces the input
            using var h2 = m["fc1"].register_forward_hook((mod, x, y) => null, always_call: true);
            using var p1 = m["fc1"].SetPrecision(PrecisionPolicy.Autocast());
            using var p2 = m["norm"].SetPrecision(PrecisionPolicy.Float32());                    // casts fc1's bf16 output
            using var p3 = m["fc2"].SetPrecision(PrecisionPolicy.Autocast());
            using var x = randn(4, 16);

            void Run(int n)
            {
                for (int i = 0; i < n; i++)
                {
                    using var scope = m.Hooks(() => m["fc2"].register_forward_hook((mod, a, y) => null));
                    using var y = (i & 1) == 0 ? m.call(x) : model.call(x);
                    _ = ModuleCallInfo.CurrentOrNull;
                }
            }

            Run(500);                                               // warm up: JIT, frame pools, caches
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long tensors0 = Tensor.TotalCount;
            long memory0 = GC.GetTotalMemory(forceFullCollection: true);
            var clock = Stopwatch.StartNew();
            Run(calls);
            clock.Stop();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long tensors1 = Tensor.TotalCount;
            long memory1 = GC.GetTotalMemory(forceFullCollection: true);
            TestContext.Out.WriteLine($"leaks: {calls} calls in {clock.Elapsed.TotalSeconds:F1} s; live tensors {tensors0} -> {tensors1}; managed memory {memory0 / 1024} KiB -> {memory1 / 1024} KiB ({(memory1 - memory0) / 1024:+#;-#;0} KiB)");
            Assert.That(tensors1, Is.EqualTo(tensors0), "live tensors");
            Assert.That(memory1 - memory0, Is.LessThan(1L << 20), "managed memory grew by 1 MiB or more");
        }

        [Test(Description = "wrapped models that are dropped (with hooks, policies, after calls, after a failed call) are collected")]
        public void Dropped_wrapped_models_are_collected()
        {
            int models = Soak.Scale(20);
            var refs = new WeakReference[models * 2];
            for (int i = 0; i < models; i++)
            {
                (refs[2 * i], refs[2 * i + 1]) = WrapUseAndDrop(i % 3);
            }
            for (int k = 0; k < 3; k++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
            int alive = 0;
            foreach (var r in refs) if (r.IsAlive) alive++;
            TestContext.Out.WriteLine($"leaks: {models} wrapped models dropped, {alive} of {refs.Length} models/facades still alive after collection");
            Assert.That(alive, Is.EqualTo(0));
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static (WeakReference model, WeakReference facade) WrapUseAndDrop(int variant)
        {
            var model = nn.Sequential(("a", nn.Linear(4, 4)), ("b", nn.ReLU()));
            var m = model.WithHooks();
            m["a"].register_forward_hook((mod, x, y) => null, always_call: true);
            m["b"].SetPrecision(PrecisionPolicy.Float32());
            using var x = ones(1, 4);
            using (m.call(x)) { }
            if (variant == 1)
            {
                using var bad = m["b"].register_forward_pre_hook((mod, t) => throw new InvalidOperationException("drop me"));
                Assert.Throws<InvalidOperationException>(() => m.call(x));
            }
            if (variant == 2) m.Dispose();
            return (new WeakReference(model), new WeakReference(m));
        }
    }
}
