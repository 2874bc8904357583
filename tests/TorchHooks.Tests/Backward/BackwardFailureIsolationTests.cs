using System;
using System.Threading;
using NUnit.Framework;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Backward
{
    /// <summary>
    /// A backward hook's failure belongs to its own pass: two threads train two models at the same time, model A's hook
    /// throws; A's <c>Backward()</c> (or A's next hooked call, after a plain <c>backward()</c>) delivers it, B never sees
    /// it and B's hooks never skip. Both start orders, many trials: with one process-wide slot the exception reached B
    /// and B's hooks were skipped in most trials.
    /// </summary>
    [TestFixture]
    public class BackwardFailureIsolationTests
    {
        private const int Trials = 40, Steps = 10;

        private sealed class Outcome
        {
            public int ADelivered, AMissed, BFired, BThrew;
            public Exception? Unexpected;
        }

        private static Sequential Mlp() => BackwardGoldenTests.Mlp();

        /// <summary>One trial: both threads run <see cref="Steps"/> steps in lockstep (a barrier per step), so their passes overlap.</summary>
        private static void Trial(bool aFirst, bool plainBackward, Outcome o)
        {
            var a = Mlp().WithHooks();
            var b = Mlp().WithHooks();
            var boom = new InvalidOperationException("model A's hook fails on purpose");
            using var ha = a["2"].register_full_backward_hook((m, gi, go) => throw boom);
            using var hb = b["2"].register_full_backward_hook((m, gi, go) => { Interlocked.Increment(ref o.BFired); return null; });
            using var barrier = new Barrier(2);

            void RunA()
            {
                try
                {
                    using var x = ones(2, 4, dtype: float64, requires_grad: true);
                    for (int i = 0; i < Steps; i++)
                    {
                        barrier.SignalAndWait();
                        if (!aFirst) Thread.SpinWait(200);
                        using var d = NewDisposeScope();
                        if (plainBackward)
                        {
                            // The failure of the previous step's plain backward() comes out of this model's next hooked call.
                            try { a.call(x).sum().backward(); }
                            catch (BackwardHookException e) when (ReferenceEquals(e.InnerException, boom)) { Interlocked.Increment(ref o.ADelivered); continue; }
                            Interlocked.Increment(ref o.AMissed);
                        }
                        else
                        {
                            try { a.call(x).sum().Backward(); Interlocked.Increment(ref o.AMissed); }
                            catch (InvalidOperationException e) when (ReferenceEquals(e, boom)) { Interlocked.Increment(ref o.ADelivered); }
                        }
                    }
                }
                catch (Exception e) { o.Unexpected ??= e; barrier.RemoveParticipant(); }
            }

            void RunB()
            {
                try
                {
                    using var x = ones(2, 4, dtype: float64, requires_grad: true);
                    for (int i = 0; i < Steps; i++)
                    {
                        barrier.SignalAndWait();
                        if (aFirst) Thread.SpinWait(200);
                        using var d = NewDisposeScope();
                        try
                        {
                            var loss = b.call(x).sum();
                            if (plainBackward) loss.backward(); else loss.Backward();
                        }
                        catch (Exception) { Interlocked.Increment(ref o.BThrew); }
                    }
                    BackwardHooks.ThrowIfFailed();   // nothing waits on B's thread either
                }
                catch (Exception e) { o.Unexpected ??= e; barrier.RemoveParticipant(); }
            }

            var ta = new Thread(RunA);
            var tb = new Thread(RunB);
            if (aFirst) { ta.Start(); tb.Start(); } else { tb.Start(); ta.Start(); }
            ta.Join();
            tb.Join();
        }

        [Test(Description = "two threads, two models: A's hook failure is delivered by A's Backward(), never to B; B's hooks never skip")]
        public void FailureStaysWithItsPass_Backward([Values(true, false)] bool aFirst)
        {
            var o = new Outcome();
            for (int t = 0; t < Trials && o.Unexpected is null; t++) Trial(aFirst, plainBackward: false, o);
            Assert.That(o.Unexpected, Is.Null, o.Unexpected?.ToString());
            Assert.That(o.BThrew, Is.Zero, "model B's Backward() never throws A's exception");
            Assert.That(o.BFired, Is.EqualTo(Trials * Steps), "model B's hook fired on every step (never skipped)");
            Assert.That((o.ADelivered, o.AMissed), Is.EqualTo((Trials * Steps, 0)), "A's Backward() delivered its own failure on every step");
        }

        [Test(Description = "two threads, two models, plain backward(): A's failure comes out of A's next hooked call, never out of B")]
        public void FailureStaysWithItsPass_PlainBackward([Values(true, false)] bool aFirst)
        {
            var o = new Outcome();
            for (int t = 0; t < Trials && o.Unexpected is null; t++) Trial(aFirst, plainBackward: true, o);
            Assert.That(o.Unexpected, Is.Null, o.Unexpected?.ToString());
            Assert.That(o.BThrew, Is.Zero, "model B's calls and backward never throw A's exception");
            Assert.That(o.BFired, Is.EqualTo(Trials * Steps), "model B's hook fired on every step (never skipped)");
            // A step whose plain backward() failed silently (AMissed) has its failure delivered by A's next call, which
            // therefore runs no backward: steps alternate, and every failure is delivered exactly once, by A.
            Assert.That((o.ADelivered, o.AMissed), Is.EqualTo((Trials * Steps / 2, Trials * Steps / 2)), "every failure of A is delivered once, by A's next call");
        }

        [Test(Description = "one thread, two models, plain backward(): A's failure is not delivered by B's next call, and B's hooks run")]
        public void FailureStaysWithItsModel_OneThread()
        {
            var a = Mlp().WithHooks();
            var b = Mlp().WithHooks();
            var boom = new InvalidOperationException("A fails");
            int bFired = 0;
            using var ha = a["2"].register_full_backward_hook((m, gi, go) => throw boom);
            using var hb = b["2"].register_full_backward_hook((m, gi, go) => { bFired++; return null; });
            using var x = ones(2, 4, dtype: float64, requires_grad: true);
            using (var d = NewDisposeScope()) a.call(x).sum().backward();
            using (var d = NewDisposeScope()) b.call(x).sum().Backward();
            Assert.That(bFired, Is.EqualTo(1), "B's hook ran although A's failure waits");
            var e = Assert.Throws<BackwardHookException>(() => a.call(x));
            Assert.That(e!.InnerException, Is.SameAs(boom));
            Assert.DoesNotThrow(() => BackwardHooks.ThrowIfFailed(), "delivered once");
        }
    }
}
