using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using TorchHooks.Tests.Autocast;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// Regression tests for the defects of issue 9 (found under attack: threads, seeded faults, long loops,
    /// misuse). Each test failed before its fix.
    /// </summary>
    [TestFixture]
    public class DefectTests
    {
        [SetUp]
        public void Clean()
        {
            ModuleHooks.RemoveAll();
            ThreadCallState.Reset();
            AutocastTestState.AssertClean("before the test");
        }

        [TearDown]
        public void LeaveClean()
        {
            ModuleHooks.RemoveAll();
            Assert.That(ModuleCallInfo.CurrentOrNull, Is.Null, "a module call was left open on the thread");
            AutocastTestState.AssertCleanAndReset();
        }

        /// <summary>child.call(x), caught; then lin.call(h). The child may throw.</summary>
        internal sealed class CatchingParent : nn.Module<Tensor, Tensor>
        {
            public readonly Thrower child = new();
            public readonly Linear lin = nn.Linear(3, 3);
            public CatchingParent() : base("CatchingParent") { RegisterComponents(); }
            public ScalarType LinDtype;

            public override Tensor forward(Tensor x)
            {
                Tensor h;
                try { h = child.call(x); } catch (InvalidOperationException) { h = x.alias(); }
                using (h)
                {
                    var y = lin.call(h);
                    LinDtype = y.dtype;
                    return y;
                }
            }
        }

        internal sealed class Thrower : nn.Module<Tensor, Tensor>
        {
            public bool Throw = true;
            public Thrower() : base("Thrower") { }
            public override Tensor forward(Tensor x) => Throw ? throw new InvalidOperationException("child failed") : x.alias();
        }

        /// <summary>Under a caller's bf16 region: child.call(x) inside its own autocast scope.</summary>
        internal sealed class ScopedParent : nn.Module<Tensor, Tensor>
        {
            public readonly Thrower child = new();
            public ScopedParent() : base("ScopedParent") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) return child.call(x);
            }
        }

        /// <summary>Calls itself (unwrapped, this.call) <see cref="Levels"/> times.</summary>
        internal sealed class Recursive : nn.Module<Tensor, Tensor>
        {
            public int Levels;
            public Recursive() : base("Recursive") { }
            public override Tensor forward(Tensor x)
            {
                if (Levels-- <= 0) return x.alias();
                return call(x);
            }
        }

        private static ScalarType LinearDtype()
        {
            using var x = ones(2, 3);
            using var w = ones(4, 3);
            using var y = nn.functional.linear(x, w);
            return y.dtype;
        }

        // ---- 1. disposing the facade ----

        [Test(Description = "Issue 9 item 1: disposing a facade leaves the wrapped model (parameters, hooks) alive; WithHooks() then gives a new facade")]
        public void Item1_disposing_the_facade_leaves_the_model_alone()
        {
            using var model = nn.Linear(2, 2);
            var facade = model.WithHooks();
            int fired = 0;
            facade.Root.register_forward_hook((m, x, y) => { fired++; return null; });
            using (facade) { }
            using var x = ones(1, 2);
            using (var y = model.call(x)) Assert.That(y.shape, Is.EqualTo(new long[] { 1, 2 }));
            Assert.That(fired, Is.EqualTo(1), "hooks belong to the module and survive the facade");
            Assert.That(model.weight!.IsInvalid, Is.False);
            var again = model.WithHooks();
            Assert.That(again, Is.Not.SameAs(facade), "a disposed facade is not handed out again");
            using (var y = again.call(x)) Assert.That(fired, Is.EqualTo(2));
            var e = Assert.Throws<ObjectDisposedException>(() => facade.call(x))!;
            Assert.That(e.Message, Does.Contain("Linear"));
        }

        // ---- 2. child exception caught inside a hook-less parent's forward ----

        [TestCase(true, Description = "Issue 9 item 2: a child's failed call caught in a hook-less parent's forward is finished before the parent's next child runs (facade call)")]
        [TestCase(false, Description = "Issue 9 item 2: the same through the unwrapped model")]
        public void Item2_caught_child_failure_is_finished(bool throughFacade)
        {
            var parent = new CatchingParent();
            var m = parent.WithHooks();
            int always = 0;
            m["child"].register_forward_hook((mod, x, y) => { always++; return null; }, always_call: true);
            m["child"].SetPrecision(PrecisionPolicy.Autocast());
            using var x = ones(2, 3);
            using (var y = throughFacade ? m.call(x) : parent.call(x)) { }
            Assert.That(always, Is.EqualTo(1), "the always_call hook ran for the failed child call");
            Assert.That(parent.LinDtype, Is.EqualTo(ScalarType.Float32), "lin ran outside the child's bf16 region");
            Assert.That(ModuleCallInfo.CurrentOrNull, Is.Null);
            Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
        }

        // ---- 3. the original exception is lost ----

        [Test(Description = "Issue 9 item 3: a child's exception inside a user autocast scope in the parent's forward propagates unchanged")]
        public void Item3_child_exception_inside_a_user_scope_propagates()
        {
            var parent = new ScopedParent();
            var m = parent.WithHooks();
            m["child"].SetPrecision(PrecisionPolicy.Float32());
            using var x = ones(2, 3);
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x))!;
            Assert.That(e.Message, Is.EqualTo("child failed"));
            var e2 = Assert.Throws<InvalidOperationException>(() => parent.call(x))!;
            Assert.That(e2.Message, Is.EqualTo("child failed"), "direct call");
        }

        // ---- 4. a direct call that throws leaks the policy's region ----

        [Test(Description = "Issue 9 item 4: after a failed direct call, the next call of any module of the tree finishes it; ThreadCallState.Reset() does it explicitly")]
        public void Item4_failed_direct_call_is_finished_by_the_next_call_or_a_reset()
        {
            var parent = new CatchingParent();
            var m = parent.WithHooks();
            m["child"].SetPrecision(PrecisionPolicy.Autocast());
            using var x = ones(2, 3);
            Assert.Throws<InvalidOperationException>(() => parent.child.call(x));
            // A sibling called next, at the same depth: runs in float32, not in the failed child's bf16 region.
            using (var y = parent.lin.call(x)) Assert.That(y.dtype, Is.EqualTo(ScalarType.Float32));
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);

            Assert.Throws<InvalidOperationException>(() => parent.child.call(x));
            Assert.That(ThreadCallState.Reset(), Is.EqualTo(1), "one abandoned call finished");
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
        }

        // ---- 5. recursive module called unwrapped ----

        [Test(Description = "Issue 9 item 5: a module that calls itself (this.call) keeps every level's hooks")]
        public void Item5_recursive_direct_calls_keep_their_hooks()
        {
            var r = new Recursive();
            var m = r.WithHooks();
            var seen = new List<string>();
            m.Root.register_forward_pre_hook((mod, x) => { seen.Add("pre" + ModuleCallInfo.Current.Depth); return null; });
            m.Root.register_forward_hook((mod, x, y) => { seen.Add("post" + ModuleCallInfo.Current.Depth); return null; });
            using var x = ones(1);
            r.Levels = 2;
            using (r.call(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { "pre0", "pre1", "pre2", "post2", "post1", "post0" }));
            seen.Clear();
            r.Levels = 2;
            using (m.call(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { "pre0", "pre1", "pre2", "post2", "post1", "post0" }));
        }

        // ---- 6. call index across threads ----

        [Test(Description = "Issue 9 item 6: each thread's first call of a module has call index 0")]
        public void Item6_call_index_is_per_thread()
        {
            var model = nn.Sequential(("a", nn.Linear(2, 2)));
            var m = model.WithHooks();
            var seen = new List<string>();
            m["a"].register_forward_hook((mod, x, y) => { lock (seen) seen.Add(ModuleCallInfo.Current.ToString()); return null; });
            using var x = ones(1, 2);
            void CallOnce() { using var y = model.call(x); }
            var a = new Thread(CallOnce); a.Start(); a.Join();
            var b = new Thread(CallOnce); b.Start(); b.Join();
            CallOnce();
            Assert.That(seen, Is.EqualTo(new[] { "a#0", "a#0", "a#0" }));
        }

        // ---- 7. race disabling a hook point ----

        [Test(Description = "Issue 9 item 7: removing one hook while another thread adds one never leaves the point inactive with a hook registered")]
        public void Item7_concurrent_changes_keep_the_active_flag_right()
        {
            var m = nn.Linear(2, 2).WithHooks();
            var point = m.Root;
            int Rounds = Soak.Scale(10_000);
            int bad = 0;
            bool stop = false;
            int pauseRequested = 0, paused = 0;
            // Thread A adds and removes the module's only pre-hook in a tight loop; it pauses at an operation
            // boundary when asked, so the main thread can check the flag with no change in flight.
            var churn = new Thread(() =>
            {
                while (!Volatile.Read(ref stop))
                {
                    if (Volatile.Read(ref pauseRequested) != 0)
                    {
                        Volatile.Write(ref paused, 1);
                        while (Volatile.Read(ref pauseRequested) != 0) Thread.SpinWait(1);
                        Volatile.Write(ref paused, 0);
                    }
                    point.register_forward_pre_hook((mod, x) => null).remove();
                }
            });
            churn.Start();
            for (int round = 0; round < Rounds; round++)
            {
                var fwd = point.register_forward_hook((mod, x, y) => null);
                Volatile.Write(ref pauseRequested, 1);
                while (Volatile.Read(ref paused) == 0) Thread.SpinWait(1);
                if (!point.IsActive) bad++;
                fwd.remove();
                Volatile.Write(ref pauseRequested, 0);
                while (Volatile.Read(ref paused) != 0) Thread.SpinWait(1);
            }
            Volatile.Write(ref stop, true);
            churn.Join();
            Assert.That(bad, Is.EqualTo(0), $"rounds that left the point inactive with a forward hook registered, of {Rounds}");
        }

        // ---- 8. GradScaler.unscale_ atomic ----

        [Test(Description = "Issue 9 item 8: unscale_ with a float16 gradient throws before changing any gradient")]
        public void Item8_unscale_is_all_or_nothing()
        {
            using var p32 = new Parameter(ones(2));
            using var p16 = new Parameter(ones(2, dtype: float16));
            p32.grad = full(2, 8.0f);
            p16.grad = full(2, 8.0f, dtype: float16);
            var opt = optim.SGD(new[] { p32, p16 }, 0.1);
            var scaler = new GradScaler(init_scale: 4.0);
            using (var l = ones(1)) using (scaler.scale(l)) { }
            Assert.Throws<InvalidOperationException>(() => scaler.unscale_(opt));
            Assert.That(p32.grad!.data<float>().ToArray(), Is.EqualTo(new[] { 8f, 8f }), "no gradient was unscaled");
            Assert.Throws<InvalidOperationException>(() => scaler.unscale_(opt));
            Assert.That(p32.grad!.data<float>().ToArray(), Is.EqualTo(new[] { 8f, 8f }), "a retry unscales nothing either");
        }

        // ---- 9. facade.forward skips the root's hooks ----

        [Test(Description = "Issue 9 item 9: facade.forward(x) skips the root's own hooks (PyTorch model.forward); children's hooks run")]
        public void Item9_facade_forward_skips_the_roots_hooks()
        {
            var model = nn.Sequential(("a", nn.Linear(2, 2)), ("b", nn.ReLU()));
            var m = model.WithHooks();
            var seen = new List<string>();
            m.Root.register_forward_pre_hook((mod, x) => { seen.Add("root pre"); return null; });
            m.Root.register_forward_hook((mod, x, y) => { seen.Add("root"); return null; });
            m["a"].register_forward_hook((mod, x, y) => { seen.Add("a"); return null; });
            using var x = ones(1, 2);
            using (m.forward(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { "a" }));
            seen.Clear();
            using (m.call(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { "root pre", "a", "root" }));
            seen.Clear();
            using (var seq = nn.Sequential(("m", m))) using (seq.call(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { "root pre", "a", "root" }), "inside a Sequential the facade is called");
        }

        // ---- 10. hazards: await inside autocast; unbounded recursion ----

        [Test(Description = "Issue 9 item 10: await inside Amp.autocast does not leave the thread under autocast")]
        public void Item10_await_inside_autocast_restores_the_thread()
        {
            static async Task<bool> Body()
            {
                using (Amp.autocast(DeviceType.CPU))
                {
                    await Task.Yield();
                    return Amp.is_autocast_enabled(DeviceType.CPU);
                }
            }
            // Run on a dedicated thread so that the caller's thread is the one the scope was entered on.
            bool callerLeftUnderAutocast = true;
            Exception? error = null;
            var t = new Thread(() =>
            {
                var task = Body();
                callerLeftUnderAutocast = Amp.is_autocast_enabled(DeviceType.CPU);
                try { task.GetAwaiter().GetResult(); } catch (Exception e) { error = e; }
            });
            t.Start(); t.Join();
            Assert.That(callerLeftUnderAutocast, Is.False, "the thread that entered the scope is restored when it leaves the async method");
            Assert.That(error, Is.InstanceOf<InvalidOperationException>());
            Assert.That(error!.Message, Does.Contain("await"));
        }

        [Test(Description = "Issue 9 item 10: a hook that calls the model without bound fails with a clear exception at the documented depth")]
        public void Item10_unbounded_recursion_throws_at_the_documented_depth()
        {
            var model = nn.Sequential(("a", nn.Linear(2, 2)));
            var m = model.WithHooks();
            m["a"].register_forward_pre_hook((mod, x) => { using (m.call(x)) { } return null; });
            using var x = ones(1, 2);
            Exception? error = null;
            var t = new Thread(() => { try { using (m.call(x)) { } } catch (Exception e) { error = e; } }, 16 * 1024 * 1024);
            t.Start(); t.Join();
            Assert.That(error, Is.InstanceOf<InvalidOperationException>());
            Assert.That(error!.Message, Does.Contain($"{ThreadCallState.MaxCallDepth}"));
            Assert.That(error.Message, Does.Contain("'a'"));
        }

        // ---- 11. messages ----

        [Test(Description = "Issue 9 item 11: a hook returning a disposed tensor")]
        public void Item11_hook_returning_a_disposed_tensor()
        {
            var m = nn.Sequential(("a", nn.Linear(2, 2)), ("b", nn.Linear(2, 2))).WithHooks();
            m["a"].register_forward_hook((mod, x, y) => { var z = y.alias(); z.Dispose(); return z; });
            using var x = ones(1, 2);
            var e = Assert.Throws<ObjectDisposedException>(() => m.call(x))!;
            Assert.That(e.Message, Does.Contain("forward hook #0 of module 'a'").And.Contain("disposed tensor"));
        }

        [Test(Description = "Issue 9 item 11: calls on a facade of a disposed model, WithHooks() on a disposed model")]
        public void Item11_disposed_model()
        {
            var model = nn.Linear(2, 2);
            var m = model.WithHooks();
            model.Dispose();
            using var x = ones(1, 2);
            var e = Assert.Throws<ObjectDisposedException>(() => m.call(x))!;
            Assert.That(e.Message, Does.Contain("Linear").And.Contain("disposed"));
            var other = nn.Linear(2, 2);
            other.Dispose();
            var e2 = Assert.Throws<ObjectDisposedException>(() => other.WithHooks())!;
            Assert.That(e2.Message, Does.Contain("Linear").And.Contain("disposed"));
        }

        [Test(Description = "Issue 9 item 11: a hook's replacement that breaks the next layer names the module path and the hook")]
        public void Item11_replacement_breaking_the_next_layer()
        {
            var m = nn.Sequential(("a", nn.Linear(2, 2)), ("b", nn.Linear(2, 2))).WithHooks();
            m["a"].register_forward_hook((mod, x, y) => zeros(1, 5));
            using var x = ones(1, 2);
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x))!;
            Assert.That(e.Message, Does.Contain("forward hook #0 of module 'a'").And.Contain("[1, 5]"));
            Assert.That(e.InnerException, Is.Not.Null, "the libtorch error is the inner exception");
        }

        [Test(Description = "Issue 9 item 11: GradScaler.step when no inf checks were recorded (PyTorch asserts)")]
        public void Item11_step_without_inf_checks()
        {
            using var p = new Parameter(ones(2));
            var opt = optim.SGD(new[] { p }, 0.1);
            var scaler = new GradScaler();
            using (var l = ones(1)) using (scaler.scale(l)) { }
            var e = Assert.Throws<InvalidOperationException>(() => scaler.step(opt))!;
            Assert.That(e.Message, Does.StartWith("No inf checks were recorded for this optimizer."));
        }
    }
}
