using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>
    /// Weight casts kept across autocast regions for wrapped models (docs/autocast.md, "Weight casts kept across
    /// regions"): kept when nothing changed, dropped when a parameter changes (optimizer step, in-place op,
    /// load_state_dict), never kept for unwrapped models or under grad.
    /// </summary>
    [TestFixture, NonParallelizable]
    public class CastCacheTests : AutocastTestBase
    {
        /// <summary>A model whose forward is a matmul with its weight (not a view: libtorch caches its cast).</summary>
        private sealed class MatMul : nn.Module<Tensor, Tensor>
        {
            public readonly TorchSharp.Modules.Parameter w;
            public MatMul() : base(nameof(MatMul)) { w = nn.Parameter(full(4, 2, 1.0f)); RegisterComponents(); }
            public override Tensor forward(Tensor x) => matmul(x, w);
        }

        private static double Run(nn.Module<Tensor, Tensor> m, Tensor x)
        {
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                using var y = m.call(x);
                return y.to_type(float32)[0, 0].item<float>();
            }
        }

        [SetUp]
        public void ClearKept() => Amp.clear_autocast_cache();

        [TearDown]
        public void ClearKeptAfter() => Amp.clear_autocast_cache();

        [Test]
        public void Per_call_regions_keep_a_wrapped_models_weight_casts_until_a_weight_changes()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var model = new MatMul();
            var facade = model.WithHooks();
            var x = ones(1, 4);
            Assert.That(Run(facade, x), Is.EqualTo(4.0));                 // PyTorch mode: learns that this thread runs facades
            Assert.That(Run(facade, x), Is.EqualTo(4.0));                 // kept mode from here on
            Assert.That(CastCache.KeptCount, Is.EqualTo(1), "the weight's cast is kept after the region");
            Assert.That(Run(facade, x), Is.EqualTo(4.0));
            Assert.That(CastCache.KeptCount, Is.EqualTo(1));

            model.w.add_(1.0);                                            // version 1 -> 2
            Assert.That(Run(facade, x), Is.EqualTo(8.0), "a changed weight is cast again");
            Assert.That(Run(facade, x), Is.EqualTo(8.0));
        }

        [Test(Description = "an optimizer step invalidates the kept casts")]
        public void An_optimizer_step_invalidates_the_kept_casts()
        {
            using var d = NewDisposeScope();
            var model = new MatMul();
            var facade = model.WithHooks();
            var x = ones(1, 4);
            var opt = optim.SGD(model.parameters(), 0.5);
            using (no_grad())
            {
                Run(facade, x); Run(facade, x);
                Assert.That(CastCache.KeptCount, Is.EqualTo(1));
            }
            // a training step (grad on, outside autocast): w -= 0.5 * grad, grad = 1 for every element of w
            var loss = facade.call(x).sum();
            loss.backward();
            opt.step();
            opt.zero_grad();
            using (no_grad())
                Assert.That(Run(facade, x), Is.EqualTo(4.0 * 0.5), "the step changed the weight: it is recast");
        }

        [Test]
        public void Load_state_dict_and_disposal_invalidate_the_kept_casts()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var model = new MatMul();
            var facade = model.WithHooks();
            var x = ones(1, 4);
            Run(facade, x); Run(facade, x);
            var sd = model.state_dict().ToDictionary(kv => kv.Key, kv => full_like(kv.Value, 3.0f));
            model.load_state_dict(sd);
            Assert.That(Run(facade, x), Is.EqualTo(12.0));
            Assert.That(CastCache.KeptCount, Is.EqualTo(1));
        }

        [Test]
        public void An_unwrapped_model_keeps_pytorch_semantics()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var model = new MatMul();
            var x = ones(1, 4);
            Assert.That(Run(model, x), Is.EqualTo(4.0));
            Assert.That(Run(model, x), Is.EqualTo(4.0));
            Assert.That(CastCache.KeptCount, Is.EqualTo(0), "nothing is kept for a model TorchHooks does not wrap");
            using (no_grad()) model.w.add_(1.0);
            Assert.That(Run(model, x), Is.EqualTo(8.0));
        }

        [Test]
        public void An_unwrapped_model_called_between_facade_calls_is_not_cached_across_regions()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var wrapped = new MatMul();
            var facade = wrapped.WithHooks();
            var raw = new MatMul();
            var x = ones(1, 4);
            Run(facade, x); Run(facade, x);                                 // kept mode
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                using var a = facade.call(x);
                using var b = raw.call(x);
                Assert.That(Amp.is_autocast_cache_enabled(), Is.True, "the region's flag as the user set it");
            }
            raw.w.add_(1.0);
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                using var b = raw.call(x);
                Assert.That(b.to_type(float32)[0, 0].item<float>(), Is.EqualTo(8.0f), "the unwrapped model's weight was not kept");
            }
        }

        [Test]
        public void Under_grad_nothing_is_kept()
        {
            using var d = NewDisposeScope();
            var model = new MatMul();
            var facade = model.WithHooks();
            var x = ones(1, 4);
            Run(facade, x); Run(facade, x);
            Assert.That(CastCache.KeptCount, Is.EqualTo(0));
        }

        [Test]
        public void Another_dtype_does_not_see_the_kept_casts()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var model = new MatMul();
            var facade = model.WithHooks();
            var x = ones(1, 4);
            Run(facade, x); Run(facade, x);
            Assert.That(CastCache.KeptCount, Is.EqualTo(1));
            using (Amp.autocast(DeviceType.CPU, ScalarType.Float16))
            {
                using var y = facade.call(x);
                Assert.That(y.dtype, Is.EqualTo(ScalarType.Float16));
            }
        }

        [Test]
        public void Clear_autocast_cache_drops_the_kept_casts()
        {
            using var d = NewDisposeScope();
            using var ng = no_grad();
            var facade = new MatMul().WithHooks();
            var x = ones(1, 4);
            Run(facade, x); Run(facade, x);
            Assert.That(CastCache.KeptCount, Is.EqualTo(1));
            Amp.clear_autocast_cache();
            Assert.That(CastCache.KeptCount, Is.EqualTo(0));
        }
    }
}
