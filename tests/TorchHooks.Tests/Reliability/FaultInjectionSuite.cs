using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Autocast;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// Seeded fault injection at every hook position and in forward, through the facade, through the unwrapped
    /// model, and inside a parent's forward that catches: after each call the thread's state is exactly as before
    /// (no open call, no autocast, no live tensor beyond the caller's), the injected exception is the one that
    /// propagates, and every call that began ran its always_call hooks exactly once. Figures: docs/reliability.md.
    /// </summary>
    [TestFixture]
    public class FaultInjectionSuite
    {
        private sealed class InjectedFault : Exception { public InjectedFault(string where) : base("injected at " + where) { } }

        /// <summary>Where a fault can be injected; None = a clean call.</summary>
        private enum Site { None, GlobalPre, GlobalFwd, PreA, FwdA, PreB, FwdB, ForwardB, PreC, FwdC, ForwardRoot }

        private sealed class Faulty : nn.Module<Tensor, Tensor>
        {
            public Func<bool> Fail = () => false;
            public Faulty(string name) : base(name) { }
            public override Tensor forward(Tensor x) => Fail() ? throw new InjectedFault("forward of " + GetName()) : x * 2;
        }

        /// <summary>a → b (policy: bf16 autocast) → c, and a parent forward that may itself fail after its children.</summary>
        private sealed class Net : nn.Module<Tensor, Tensor>
        {
            public readonly Linear a = nn.Linear(4, 4);
            public readonly Faulty b = new("b");
            public readonly Linear c = nn.Linear(4, 4);
            public Func<bool> Fail = () => false;
            public bool CatchB;
            public Net() : base("Net") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                using var h1 = a.call(x);
                Tensor h2;
                if (CatchB) { try { h2 = b.call(h1); } catch (InjectedFault) { h2 = h1.alias(); } }
                else h2 = b.call(h1);
                using (h2)
                {
                    using var h2f = h2.to(float32);
                    var y = c.call(h2f);
                    if (Fail()) { y.Dispose(); throw new InjectedFault("forward of the root"); }
                    return y;
                }
            }
        }

        [SetUp]
        public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

        [TearDown]
        public void LeaveClean() { ModuleHooks.RemoveAll(); AutocastTestState.AssertCleanAndReset(); }

        [Test(Description = "seeded faults at every hook position and forward: state exactly as before after each call")]
        public void Every_fault_leaves_the_state_as_before()
        {
            int calls = Soak.Scale(10_000);
            var rng = new Random(20261129);
            var net = new Net();
            var m = net.WithHooks();
            var site = Site.None;
            bool Fires(Site s) => site == s;
            var began = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0, [""] = 0 };
            var always = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0, [""] = 0 };
            string PathOf(nn.Module mod) => ReferenceEquals(mod, net) ? "" : ReferenceEquals(mod, net.a) ? "a" : ReferenceEquals(mod, net.b) ? "b" : "c";

            // The first global pre-hook counts calls that began; the always_call hooks count calls that finished.
            using var count = ModuleHooks.register_module_forward_pre_hook((mod, x) => { began[PathOf(mod)]++; return null; });
            using var gp = ModuleHooks.register_module_forward_pre_hook((mod, x) => Fires(Site.GlobalPre) && ReferenceEquals(mod, net.b) ? throw new InjectedFault("global pre-hook") : null);
            using var gf = ModuleHooks.register_module_forward_hook((mod, x, y) => Fires(Site.GlobalFwd) && ReferenceEquals(mod, net.c) ? throw new InjectedFault("global forward hook") : null);
            foreach (var path in new[] { "", "a", "b", "c" })
            {
                var p = path;
                m[p].register_forward_hook((mod, x, y) => { always[p]++; return null; }, always_call: true);
            }
            m["a"].register_forward_pre_hook((mod, x) => Fires(Site.PreA) ? throw new InjectedFault("pre-hook of a") : null);
            m["a"].register_forward_hook((mod, x, y) => Fires(Site.FwdA) ? throw new InjectedFault("forward hook of a") : null);
            m["b"].register_forward_pre_hook((mod, x) => Fires(Site.PreB) ? throw new InjectedFault("pre-hook of b") : null);
            m["b"].register_forward_hook((mod, x, y) => Fires(Site.FwdB) ? throw new InjectedFault("forward hook of b") : null);
            m["c"].register_forward_pre_hook((mod, x) => Fires(Site.PreC) ? throw new InjectedFault("pre-hook of c") : null);
            m["c"].register_forward_hook((mod, x, y) => Fires(Site.FwdC) ? throw new InjectedFault("forward hook of c") : null);
            m["b"].SetPrecision(PrecisionPolicy.Autocast());
            net.b.Fail = () => Fires(Site.ForwardB);
            net.Fail = () => Fires(Site.ForwardRoot);

            using var x = randn(2, 4);
            var before = AutocastState.Capture();
            // The live-tensor count is process-wide: let earlier tests' garbage be finalized before the baseline.
            long tensorsBefore = LiveTensors.Settle();
            var sites = Enum.GetValues<Site>();
            int faults = 0, caughtInside = 0;
            var perSite = sites.ToDictionary(s => s, _ => 0);
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++)
            {
                site = sites[rng.Next(sites.Length)];
                int route = rng.Next(3);          // 0 facade, 1 unwrapped model, 2 facade with b's failure caught in forward
                net.CatchB = route == 2;
                perSite[site]++;
                foreach (var k in began.Keys.ToList()) { began[k] = 0; always[k] = 0; }
                // A module whose forward hook throws loses its output (as in PyTorch, where the GC takes it): a dispose
                // scope per call takes those, so the live-tensor check below sees what TorchHooks itself leaves.
                using var tensors = NewDisposeScope();
                try
                {
                    using var y = route == 1 ? net.call(x) : m.call(x);
                    Assert.That(site == Site.None || (net.CatchB && site is Site.ForwardB or Site.PreB or Site.FwdB or Site.GlobalPre), $"call {i}: no fault surfaced at {site}");
                    if (site != Site.None) caughtInside++;
                }
                catch (InjectedFault f)
                {
                    faults++;
                    Assert.That(site, Is.Not.EqualTo(Site.None), $"call {i}");
                    Assert.That(f.Message, Does.Contain(Where(site)), $"call {i}: the injected exception itself propagates");
                }
                if (route == 1) ThreadCallState.Reset();   // a direct call that threw is finished at the next call; end it now to compare
                tensors.Dispose();
                Assert.That(ModuleCallInfo.CurrentOrNull, Is.Null, $"call {i} ({site}, route {route}): a module call left open");
                Assert.That(AutocastStack.Depth, Is.EqualTo(0), $"call {i} ({site}, route {route}): autocast region left open");
                Assert.That(AutocastState.Capture(), Is.EqualTo(before), $"call {i} ({site}, route {route}): autocast state changed");
                Assert.That(Tensor.TotalCount, Is.EqualTo(tensorsBefore), $"call {i} ({site}, route {route}): live tensors");
                foreach (var k in began.Keys)
                    Assert.That(always[k], Is.EqualTo(began[k]), $"call {i} ({site}, route {route}): '{k}' began {began[k]}x, always_call ran {always[k]}x");
            }
            clock.Stop();
            TestContext.Out.WriteLine($"fault injection: {calls} calls, {faults} faults surfaced, {caughtInside} caught inside forward, {clock.Elapsed.TotalSeconds:F1} s; per site: " +
                string.Join(", ", perSite.Select(kv => $"{kv.Key} {kv.Value}")));
            Assert.That(faults, Is.GreaterThan(calls / 2));
        }

        private static string Where(Site s) => s switch
        {
            Site.GlobalPre => "global pre-hook",
            Site.GlobalFwd => "global forward hook",
            Site.PreA => "pre-hook of a",
            Site.FwdA => "forward hook of a",
            Site.PreB => "pre-hook of b",
            Site.FwdB => "forward hook of b",
            Site.ForwardB => "forward of b",
            Site.PreC => "pre-hook of c",
            Site.FwdC => "forward hook of c",
            Site.ForwardRoot => "forward of the root",
            _ => "?",
        };
    }
}
