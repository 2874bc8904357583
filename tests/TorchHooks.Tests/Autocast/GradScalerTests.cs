using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>GradScaler semantics (PyTorch's GradScaler and its _amp_update_scale_ kernel).</summary>
    [TestFixture]
    public class GradScalerTests
    {
        private DisposeScope? _scope;

        [SetUp]
        public void Open() => _scope = NewDisposeScope();

        [TearDown]
        public void Close() => _scope?.Dispose();

        /// <summary>One parameter [1, 2, 3] whose loss sum(p * c) has gradient c.</summary>
        private static (TorchSharp.Modules.Parameter p, optim.Optimizer opt) Problem(double lr = 0.1)
        {
            var p = nn.Parameter(tensor(new float[] { 1, 2, 3 }));
            return (p, optim.SGD(new[] { p }, lr));
        }

        private static Tensor Loss(Tensor p) => (p * tensor(new float[] { 0.5f, -1f, 2f })).sum();

        private static float[] Values(Tensor t) => t.detach().to_type(float32).data<float>().ToArray();

        [Test]
        public void Defaults_are_pytorchs()
        {
            var s = new GradScaler();
            Assert.That(s.is_enabled(), Is.True);
            Assert.That(s.get_scale(), Is.EqualTo(65536.0));
            Assert.That(s.get_growth_factor(), Is.EqualTo(2.0));
            Assert.That(s.get_backoff_factor(), Is.EqualTo(0.5));
            Assert.That(s.get_growth_interval(), Is.EqualTo(2000));
            Assert.That(s.get_growth_tracker(), Is.EqualTo(0));
        }

        [Test]
        public void Scale_multiplies_by_the_scale_factor()
        {
            var s = new GradScaler(init_scale: 8.0);
            var loss = tensor(1.5f);
            var scaled = s.scale(loss);
            Assert.That(scaled.item<float>(), Is.EqualTo(12.0f));
            Assert.That(scaled.dtype, Is.EqualTo(ScalarType.Float32));
            var many = s.scale(new[] { tensor(1f), tensor(2f) });
            Assert.That(many.Select(t => t.item<float>()), Is.EqualTo(new[] { 8f, 16f }));
        }

        [Test]
        public void Unscale_divides_the_gradients_by_the_scale()
        {
            var (p, opt) = Problem();
            var s = new GradScaler(init_scale: 1024.0);
            s.scale(Loss(p)).backward();
            Assert.That(Values(p.grad!), Is.EqualTo(new[] { 512f, -1024f, 2048f }));
            s.unscale_(opt);
            Assert.That(Values(p.grad!), Is.EqualTo(new[] { 0.5f, -1f, 2f }));
            Assert.That(s.step(opt), Is.True);
            Assert.That(Values(p), Is.EqualTo(new[] { 1f - 0.05f, 2f + 0.1f, 3f - 0.2f }).Within(1e-6));
            s.update();
        }

        [Test]
        public void Unscale_and_step_run_once_per_optimizer_per_update()
        {
            var (p, opt) = Problem();
            var s = new GradScaler();
            s.scale(Loss(p)).backward();
            s.unscale_(opt);
            var e = Assert.Throws<InvalidOperationException>(() => s.unscale_(opt))!;
            Assert.That(e.Message, Does.Contain("unscale_() has already been called on this optimizer since the last update()"));
            Assert.That(s.step(opt), Is.True, "step after an explicit unscale_ does not unscale again");
            Assert.That(Values(p), Is.EqualTo(new[] { 0.95f, 2.1f, 2.8f }).Within(1e-6));
            Assert.That(() => s.step(opt), Throws.InvalidOperationException.With.Message.Contains("step() has already been called"));
            Assert.That(() => s.unscale_(opt), Throws.InvalidOperationException.With.Message.Contains("after step()"));
            s.update();
            opt.zero_grad();
            s.scale(Loss(p)).backward();
            Assert.DoesNotThrow(() => s.unscale_(opt));
        }

        [TestCase(float.PositiveInfinity)]
        [TestCase(float.NaN)]
        public void A_non_finite_gradient_skips_the_step_and_backs_off(float bad)
        {
            var (p, opt) = Problem();
            var s = new GradScaler(growth_interval: 3);
            for (int i = 0; i < 2; i++)
            {
                opt.zero_grad();
                s.scale(Loss(p)).backward();
                Assert.That(s.step(opt), Is.True);
                s.update();
            }
            Assert.That(s.get_growth_tracker(), Is.EqualTo(2));
            var before = Values(p);

            opt.zero_grad();
            s.scale(Loss(p)).backward();
            using (no_grad()) p.grad![1].fill_(bad);
            Assert.That(s.step(opt), Is.False);
            Assert.That(Values(p), Is.EqualTo(before), "skipped step leaves the parameters alone");
            s.update();
            Assert.That(s.get_scale(), Is.EqualTo(32768.0));
            Assert.That(s.get_growth_tracker(), Is.EqualTo(0));
        }

        [Test]
        public void The_scale_grows_after_growth_interval_finite_steps()
        {
            var (p, opt) = Problem(lr: 1e-3);
            var s = new GradScaler(init_scale: 4.0, growth_factor: 3.0, growth_interval: 3);
            var scales = new List<double>();
            var trackers = new List<int>();
            for (int i = 0; i < 7; i++)
            {
                opt.zero_grad();
                s.scale(Loss(p)).backward();
                s.step(opt);
                s.update();
                scales.Add(s.get_scale());
                trackers.Add(s.get_growth_tracker());
            }
            Assert.That(scales, Is.EqualTo(new[] { 4.0, 4.0, 12.0, 12.0, 12.0, 36.0, 36.0 }));
            Assert.That(trackers, Is.EqualTo(new[] { 1, 2, 0, 1, 2, 0, 1 }));
        }

        [Test]
        public void Growth_that_would_overflow_float32_is_not_applied()
        {
            var (p, opt) = Problem(lr: 0);
            var s = new GradScaler(init_scale: 3e38, growth_interval: 1);
            opt.zero_grad();
            using (var loss = tensor(1e-30f) * Loss(p)) s.scale(loss).backward();
            Assert.That(s.step(opt), Is.True);
            s.update();
            Assert.That(s.get_scale(), Is.EqualTo((double)3e38f));
            Assert.That(s.get_growth_tracker(), Is.EqualTo(0));
        }

        [Test]
        public void Only_the_optimizer_with_the_overflow_skips_but_update_backs_off()
        {
            var p1 = nn.Parameter(tensor(new float[] { 1, 2 }));
            var p2 = nn.Parameter(tensor(new float[] { 3, 4 }));
            var o1 = optim.SGD(new[] { p1 }, 0.1);
            var o2 = optim.SGD(new[] { p2 }, 0.1);
            var s = new GradScaler(init_scale: 2.0);
            s.scale((p1 * 2).sum() + (p2 * 3).sum()).backward();
            using (no_grad()) p2.grad![0].fill_(float.PositiveInfinity);
            Assert.That(s.step(o1), Is.True);
            Assert.That(s.step(o2), Is.False);
            Assert.That(Values(p1), Is.EqualTo(new[] { 0.8f, 1.8f }).Within(1e-6));
            Assert.That(Values(p2), Is.EqualTo(new[] { 3f, 4f }));
            s.update();
            Assert.That(s.get_scale(), Is.EqualTo(1.0));
        }

        [Test]
        public void Update_with_a_new_scale_sets_it_and_keeps_the_tracker()
        {
            var (p, opt) = Problem();
            var s = new GradScaler(growth_interval: 10);
            s.scale(Loss(p)).backward();
            s.step(opt);
            s.update();
            opt.zero_grad();
            s.scale(Loss(p)).backward();
            s.step(opt);
            s.update(new_scale: 100.0);
            Assert.That(s.get_scale(), Is.EqualTo(100.0));
            Assert.That(s.get_growth_tracker(), Is.EqualTo(1));
            Assert.That(() => s.update(new_scale: -1), Throws.InstanceOf<ArgumentOutOfRangeException>());
        }

        [Test]
        public void Calls_out_of_sequence_throw_with_the_fix()
        {
            var (p, opt) = Problem();
            var s = new GradScaler();
            Assert.That(() => s.unscale_(opt), Throws.InvalidOperationException.With.Message.Contains("scaler.scale(loss"));
            Assert.That(() => s.step(opt), Throws.InvalidOperationException);
            Assert.That(() => s.update(), Throws.InvalidOperationException);
            s.scale(Loss(p)).backward();
            Assert.That(() => s.update(), Throws.InvalidOperationException.With.Message.Contains("No inf checks were recorded"));
        }

        [Test]
        public void Float16_gradients_are_refused()
        {
            var p = nn.Parameter(ones(3, dtype: float16));
            var opt = optim.SGD(new[] { p }, 0.1);
            var s = new GradScaler();
            s.scale(p.sum()).backward();
            Assert.That(() => s.unscale_(opt), Throws.InvalidOperationException.With.Message.Contains("FP16 gradients"));
        }

        [Test(Description = "upstream: test_grad_scaling_state_dict")]
        public void State_dict_round_trips()
        {
            var (p, opt) = Problem();
            var a = new GradScaler(init_scale: 3.0, growth_factor: 4.0, backoff_factor: 0.5, growth_interval: 2);
            a.scale(Loss(p)).backward();
            a.step(opt);
            a.update();
            var sd = a.state_dict();
            Assert.That(sd.Keys, Is.EquivalentTo(new[] { "scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker" }));
            Assert.That(sd["scale"], Is.EqualTo(3.0));
            Assert.That(sd["_growth_tracker"], Is.EqualTo(1));

            // Loaded before first use: the first scale() uses the loaded scale; loaded after use: replaces it.
            var b = new GradScaler(init_scale: 7.0, growth_factor: 1.5, backoff_factor: 0.25, growth_interval: 1);
            b.load_state_dict(sd);
            Assert.That(b.state_dict(), Is.EqualTo(sd));
            var c = new GradScaler();
            c.scale(tensor(1f));
            c.load_state_dict(new Dictionary<string, object>
            {
                ["scale"] = 3.0f, ["growth_factor"] = 4, ["backoff_factor"] = 0.5m, ["growth_interval"] = 2L, ["_growth_tracker"] = 1,
            });
            Assert.That(c.state_dict(), Is.EqualTo(sd));
            Assert.That(c.scale(tensor(1f)).item<float>(), Is.EqualTo(3f));

            opt.zero_grad();
            b.scale(Loss(p)).backward();
            b.step(opt);
            b.update();
            Assert.That(b.get_scale(), Is.EqualTo(12.0), "the loaded tracker (1) + this step reaches the loaded interval (2)");
        }

        [Test]
        public void Bad_state_dicts_are_rejected()
        {
            var s = new GradScaler();
            Assert.That(() => s.load_state_dict(new Dictionary<string, object>()),
                Throws.ArgumentException.With.Message.Contains("disabled instance"));
            var sd = new GradScaler().state_dict();
            sd.Remove("growth_interval");
            Assert.That(() => s.load_state_dict(sd), Throws.ArgumentException.With.Message.Contains("growth_interval"));
            var bad = new GradScaler().state_dict();
            bad["backoff_factor"] = 2.0;
            Assert.That(() => s.load_state_dict(bad), Throws.InstanceOf<ArgumentOutOfRangeException>());
        }

        [Test]
        public void A_disabled_scaler_passes_everything_through()
        {
            var (p, opt) = Problem();
            var s = new GradScaler(enabled: false, growth_factor: 0.1);
            var loss = Loss(p);
            Assert.That(s.scale(loss), Is.SameAs(loss));
            loss.backward();
            s.unscale_(opt);
            Assert.That(Values(p.grad!), Is.EqualTo(new[] { 0.5f, -1f, 2f }));
            Assert.That(s.step(opt), Is.True);
            s.update();
            Assert.That(s.get_scale(), Is.EqualTo(1.0));
            Assert.That(s.state_dict(), Is.Empty);
            Assert.DoesNotThrow(() => s.load_state_dict(new Dictionary<string, object>()));
        }

        [Test]
        public void Constructor_arguments_are_validated()
        {
            Assert.That(() => new GradScaler(growth_factor: 1.0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("growth_factor"));
            Assert.That(() => new GradScaler(backoff_factor: 1.0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("backoff_factor"));
            Assert.That(() => new GradScaler(backoff_factor: 0.0), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new GradScaler(growth_interval: 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("growth_interval"));
            Assert.That(() => new GradScaler(init_scale: 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("init_scale"));
            Assert.That(() => new GradScaler(init_scale: 1e39), Throws.InstanceOf<ArgumentOutOfRangeException>());
            var s = new GradScaler();
            Assert.That(() => s.set_growth_factor(0.5), Throws.InstanceOf<ArgumentOutOfRangeException>());
            s.set_growth_factor(3); s.set_backoff_factor(0.25); s.set_growth_interval(5);
            Assert.That((s.get_growth_factor(), s.get_backoff_factor(), s.get_growth_interval()), Is.EqualTo((3.0, 0.25, 5)));
        }
    }
}
