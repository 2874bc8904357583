using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using NUnit.Framework;
using TorchHooks.Tests.Autocast;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// Threads calling one wrapped model while another thread registers and removes local and global hooks,
    /// hook scopes and precision policies: persistent hooks fire exactly once per call, nothing is lost or
    /// doubled, and every worker thread ends clean. Figures: docs/reliability.md.
    /// </summary>
    [TestFixture]
    public class ConcurrencySuite
    {
        private const int Workers = 4;

        [SetUp]
        public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

        [TearDown]
        public void LeaveClean() { ModuleHooks.RemoveAll(); AutocastTestState.AssertCleanAndReset(); }

        [Test(Description = "4 threads x N calls on one wrapped model, a fifth thread churning local/global hooks, scopes and policies: exact counts")]
        public void Calls_under_churn_count_exactly()
        {
            int callsPerWorker = Soak.Scale(10_000);
            var model = nn.Sequential(("fc1", nn.Linear(8, 8)), ("act", nn.ReLU()), ("fc2", nn.Linear(8, 4)));
            var m = model.WithHooks();
            long localPre = 0, localFwd = 0, global = 0, churned = 0;
            // Persistent hooks: must fire exactly once per call of their module, whatever the churn does.
            using var p1 = m["fc1"].register_forward_pre_hook((mod, x) => { Interlocked.Increment(ref localPre); return null; });
            using var p2 = m["fc2"].register_forward_hook((mod, x, y) => { Interlocked.Increment(ref localFwd); return null; }, always_call: true);
            var fc1 = model[0];
            using var g = ModuleHooks.register_module_forward_hook((mod, x, y) => { if (ReferenceEquals(mod, fc1)) Interlocked.Increment(ref global); return null; });

            bool stop = false;
            var churnErrors = new List<Exception>();
            int churnRounds = 0;
            var churn = new Thread(() =>
            {
                var rng = new Random(7);
                try
                {
                    while (!Volatile.Read(ref stop))
                    {
                        switch (rng.Next(5))
                        {
                            case 0: m["act"].register_forward_hook((mod, x, y) => { Interlocked.Increment(ref churned); return null; }).remove(); break;
                            case 1: ModuleHooks.register_module_forward_pre_hook((mod, x) => { Interlocked.Increment(ref churned); return null; }).remove(); break;
                            case 2: using (m.Hooks(() => { m["fc1"].register_forward_hook((mod, x, y) => null); m["fc2"].register_forward_pre_hook((mod, x) => null); })) Thread.Yield(); break;
                            case 3: using (m["fc2"].SetPrecision(PrecisionPolicy.Autocast())) Thread.Yield(); break;
                            default: using (m["fc1"].SetPrecision(PrecisionPolicy.Float32())) Thread.Yield(); break;
                        }
                        churnRounds++;
                    }
                }
                catch (Exception e) { lock (churnErrors) churnErrors.Add(e); }
            });

            var errors = new List<string>();
            var workers = Enumerable.Range(0, Workers).Select(w => new Thread(() =>
            {
                try
                {
                    using var x = randn(2, 8);
                    for (int i = 0; i < callsPerWorker; i++)
                    {
                        // Alternate the facade and the unwrapped model: hooks belong to the modules.
                        using var y = (i & 1) == 0 ? m.call(x) : model.call(x);
                        if (y.shape[1] != 4) throw new InvalidOperationException("wrong output shape");
                    }
                    if (ModuleCallInfo.CurrentOrNull is { } open) throw new InvalidOperationException($"call left open: {open}");
                    if (Amp.is_autocast_enabled(DeviceType.CPU) || AutocastStack.Depth != 0) throw new InvalidOperationException("autocast left on");
                }
                catch (Exception e) { lock (errors) errors.Add($"worker {w}: {e}"); }
            })).ToList();

            var clock = Stopwatch.StartNew();
            churn.Start();
            workers.ForEach(t => t.Start());
            workers.ForEach(t => t.Join());
            Volatile.Write(ref stop, true);
            churn.Join();
            clock.Stop();

            long calls = (long)Workers * callsPerWorker;
            TestContext.Out.WriteLine($"concurrency: {Workers} threads x {callsPerWorker} calls = {calls} calls, {churnRounds} churn rounds, {clock.Elapsed.TotalSeconds:F1} s");
            Assert.That(errors, Is.Empty);
            Assert.That(churnErrors, Is.Empty);
            Assert.That(localPre, Is.EqualTo(calls), "fc1's pre-hook");
            Assert.That(localFwd, Is.EqualTo(calls), "fc2's forward hook");
            Assert.That(global, Is.EqualTo(calls), "the global hook on fc1");
            Assert.That(churnRounds, Is.GreaterThan(0));
            Assert.That(m["fc1"].Precision, Is.Null);
            Assert.That(m["fc2"].Precision, Is.Null);
            Assert.That(m["act"].ForwardHookCount, Is.EqualTo(0), "every churned hook was removed");
            Assert.That(m["fc1"].ForwardHookCount + m["fc2"].ForwardPreHookCount, Is.EqualTo(0), "every scope removed its hooks");
            Assert.That(ModuleHooks.Handles.Count, Is.EqualTo(1), "only the persistent global hook is left");
            Assert.That(m["fc1"].IsActive && m["fc2"].IsActive && !m["act"].IsActive, "active flags match the hooks left");
        }

        [Test(Description = "WithHooks() on one model from many threads at once returns one facade")]
        public void Concurrent_WithHooks_returns_one_facade()
        {
            int rounds = Soak.Scale(50);
            for (int r = 0; r < rounds; r++)
            {
                var model = nn.Sequential(("a", nn.Linear(2, 2)), ("b", nn.Linear(2, 2)));
                var facades = new object[8];
                using var go = new Barrier(facades.Length);
                var threads = Enumerable.Range(0, facades.Length).Select(i => new Thread(() => { go.SignalAndWait(); facades[i] = model.WithHooks(); })).ToList();
                threads.ForEach(t => t.Start());
                threads.ForEach(t => t.Join());
                Assert.That(facades.Distinct().Count(), Is.EqualTo(1), $"round {r}");
                // One hook point per module, whichever thread installed it: a hook fires once per call.
                var m = (HookedModule<Tensor, Tensor>)facades[0];
                int fired = 0;
                using var h = m["a"].register_forward_hook((mod, x, y) => { fired++; return null; });
                using var x = ones(1, 2);
                using (m.call(x)) { }
                Assert.That(fired, Is.EqualTo(1));
            }
        }

        [Test(Description = "call indices are exact per thread while several threads call one model with a shared module")]
        public void Call_indices_are_exact_per_thread()
        {
            int calls = Soak.Scale(1_000);
            var shared = nn.Linear(4, 4);
            var model = nn.Sequential(("first", shared), ("act", nn.ReLU()), ("second", shared));
            var m = model.WithHooks();
            int wrong = 0;
            var perThread = new ThreadLocal<List<int>>(() => new List<int>(), trackAllValues: false);
            using var h = m["first"].register_forward_hook((mod, x, y) => { perThread.Value!.Add(ModuleCallInfo.Current.CallIndex); return null; });
            var threads = Enumerable.Range(0, Workers).Select(_ => new Thread(() =>
            {
                using var x = randn(1, 4);
                for (int i = 0; i < calls; i++)
                {
                    perThread.Value!.Clear();
                    using (m.call(x)) { }
                    if (!perThread.Value!.SequenceEqual(new[] { 0, 1 })) Interlocked.Increment(ref wrong);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.That(wrong, Is.EqualTo(0), $"calls whose shared module did not see call indices 0 then 1, of {Workers * calls}");
        }
    }
}
