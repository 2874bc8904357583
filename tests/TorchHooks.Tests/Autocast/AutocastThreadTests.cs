using System;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>Thread-locality of libtorch's autocast state, the carry helpers, and the allocation-free token API.</summary>
    [TestFixture]
    public class AutocastThreadTests : AutocastTestBase
    {
        private sealed record Seen(int Thread, bool Enabled, ScalarType Dtype, ScalarType Linear);

        private static Seen Look() => new(Environment.CurrentManagedThreadId,
            Amp.is_autocast_enabled(DeviceType.CPU), Amp.get_autocast_dtype(DeviceType.CPU), LinearDtype());

        [Test]
        public void A_new_thread_does_not_see_the_callers_autocast()
        {
            using (Amp.autocast(DeviceType.CPU, ScalarType.Float16))
            {
                Seen? seen = null;
                var t = new Thread(() => seen = Look());
                t.Start();
                t.Join();
                Assert.That(seen!.Enabled, Is.False);
                Assert.That(seen.Dtype, Is.EqualTo(ScalarType.BFloat16), "the worker has libtorch's default dtype");
                Assert.That(seen.Linear, Is.EqualTo(ScalarType.Float32));
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float16), "the caller is still under autocast");
            }
        }

        [Test]
        public async Task A_TaskRun_worker_does_not_see_the_callers_autocast()
        {
            int caller = Environment.CurrentManagedThreadId;
            var scope = Amp.autocast(DeviceType.CPU);
            Seen seen;
            try
            {
                // Start the worker and wait for it synchronously, so this thread stays in the scope.
                seen = Task.Run(Look).GetAwaiter().GetResult();
            }
            finally
            {
                scope.Dispose();
            }
            Assert.That(seen.Thread, Is.Not.EqualTo(caller));
            Assert.That(seen.Enabled, Is.False);
            Assert.That(seen.Linear, Is.EqualTo(ScalarType.Float32));
            await Task.Yield();
        }

        [Test]
        public void Capture_and_Run_carry_the_state_to_a_worker_and_restore_it_there()
        {
            AutocastState state;
            using (Amp.autocast(DeviceType.CPU, ScalarType.Float16, cache_enabled: false))
            using (Amp.autocast(DeviceType.CUDA, ScalarType.BFloat16))
                state = AutocastState.Capture();
            Assert.That(state.CpuEnabled && state.CudaEnabled, Is.True);
            Assert.That((state.CpuDtype, state.CudaDtype, state.CacheEnabled), Is.EqualTo((ScalarType.Float16, ScalarType.BFloat16, false)));

            (Seen? inside, Seen? after, bool cudaInside, bool cacheInside, long nestingInside, long nestingAfter) r = default;
            var t = new Thread(() =>
            {
                var inside = state.Run(() =>
                {
                    r.cudaInside = Amp.is_autocast_enabled(DeviceType.CUDA);
                    r.cacheInside = Amp.is_autocast_cache_enabled();
                    r.nestingInside = AutocastNative.CurrentNesting();
                    return Look();
                });
                r.inside = inside;
                r.after = Look();
                r.nestingAfter = AutocastNative.CurrentNesting();
            });
            t.Start();
            t.Join();
            Assert.That(r.inside!.Enabled, Is.True);
            Assert.That(r.inside.Linear, Is.EqualTo(ScalarType.Float16));
            Assert.That(r.cudaInside, Is.True);
            Assert.That(r.cacheInside, Is.False);
            Assert.That(r.nestingInside, Is.EqualTo(1), "an applied state counts as one region");
            Assert.That(r.after!.Enabled, Is.False);
            Assert.That(r.after.Linear, Is.EqualTo(ScalarType.Float32));
            Assert.That(r.nestingAfter, Is.EqualTo(0));
        }

        [Test]
        public async Task Wrap_runs_a_TaskRun_body_under_the_state_captured_at_the_call()
        {
            Func<Seen> body;
            using (Amp.autocast(DeviceType.CPU))
                body = AutocastState.Wrap(Look);
            var seen = await Task.Run(body);
            Assert.That(seen.Enabled, Is.True);
            Assert.That(seen.Linear, Is.EqualTo(ScalarType.BFloat16));

            bool enabledInAction = false;
            Action act;
            using (Amp.autocast(DeviceType.CPU, ScalarType.Float16))
                act = AutocastState.Wrap(() => { enabledInAction = LinearDtype() == ScalarType.Float16; });
            await Task.Run(act);
            Assert.That(enabledInAction, Is.True);
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False, "Wrap itself changes nothing on the caller");
        }

        [Test]
        public void Run_restores_the_state_when_the_body_throws()
        {
            var on = Amp.autocast(DeviceType.CPU);
            var state = AutocastState.Capture();
            on.Dispose();
            Assert.Throws<InvalidOperationException>(() => state.Run(() => throw new InvalidOperationException("boom")));
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
        }

        [Test]
        public void Apply_of_a_state_nests_with_scopes()
        {
            var off = AutocastState.Capture();
            using (Amp.autocast(DeviceType.CPU))
            {
                using (off.Apply())
                {
                    Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32), "applying an 'off' snapshot disables autocast");
                    Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(2));
                }
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
            }
            Assert.That(AutocastState.Capture(), Is.EqualTo(off));
            Assert.That(off.ToString(), Is.EqualTo("cpu: off BFloat16, cuda: off Float16, cache: on"));
        }

        [Test]
        public void Token_enter_and_exit_force_a_precision_for_one_call()
        {
            using (Amp.autocast(DeviceType.CPU))
            {
                var full = Amp.Enter(DeviceType.CPU, null, enabled: false);
                Assert.That(full.IsOpen, Is.True);
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
                full.Dispose();
                Assert.That(full.IsOpen, Is.False);
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));

                var copy = Amp.Enter(DeviceType.CPU, ScalarType.Float16, enabled: true);
                var same = copy;
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float16));
                copy.Dispose();
                same.Dispose(); // disposing a copy again is a no-op
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
            }
            default(AutocastToken).Dispose();
            Assert.That(default(AutocastToken).IsOpen, Is.False);
        }

        [Test]
        public void Entering_and_exiting_with_tokens_allocates_nothing()
        {
            for (int i = 0; i < 100; i++) Amp.Enter(DeviceType.CPU, ScalarType.BFloat16, true).Dispose();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10_000; i++)
            {
                var outer = Amp.Enter(DeviceType.CPU, ScalarType.BFloat16, true);
                var inner = Amp.Enter(DeviceType.CPU, null, false);
                inner.Dispose();
                outer.Dispose();
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(allocated, Is.EqualTo(0));
        }

        [Test]
        public void A_token_exited_on_another_thread_throws()
        {
            var token = Amp.Enter(DeviceType.CPU, null, true);
            Exception? error = null;
            var t = new Thread(() => { try { token.Dispose(); } catch (Exception e) { error = e; } });
            t.Start();
            t.Join();
            Assert.That(error, Is.InstanceOf<InvalidOperationException>());
            Assert.That(token.IsOpen, Is.True);
            token.Dispose();
        }
    }
}
