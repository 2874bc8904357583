using System;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>Autocast changes what libtorch computes, and mixed-precision training converges.</summary>
    [TestFixture]
    [Category("Slow")]   // training loops in three precisions: left out by --filter "TestCategory!=Slow" (README)
    public class AmpTrainingTests : AutocastTestBase
    {
        [Test]
        public void Inside_autocast_a_linear_then_relu_computes_in_bfloat16()
        {
            using var d = NewDisposeScope();
            manual_seed(1);
            var lin = nn.Linear(64, 32);
            var x = randn(16, 64);
            Tensor hidden, outAc;
            using (Amp.autocast(DeviceType.CPU))
            {
                hidden = lin.call(x);
                outAc = hidden.relu();
            }
            var out32 = lin.call(x).relu();
            Assert.That(hidden.dtype, Is.EqualTo(ScalarType.BFloat16), "the intermediate is bf16");
            Assert.That(outAc.dtype, Is.EqualTo(ScalarType.BFloat16), "relu ran on bf16");
            Assert.That(out32.dtype, Is.EqualTo(ScalarType.Float32));

            var ac = outAc.to_type(float32);
            var diff = (ac - out32).abs();
            var maxDiff = diff.max().item<float>();
            var maxMag = out32.abs().max().item<float>();
            // Different values (bf16 has 8 significant bits) ...
            Assert.That(maxDiff, Is.GreaterThan(0f));
            // ... but within bf16 rounding of inputs, weights and result (a few 2^-8 relative steps).
            Assert.That(maxDiff, Is.LessThan(maxMag * 0.03f));
            var rel = (diff / (out32.abs() + 1e-2f)).mean().item<float>();
            Assert.That(rel, Is.LessThan(0.01f));
            // Every bf16 output is exactly representable in bf16 (the op really produced bf16, not a cast of float32).
            Assert.That(ac.to_type(bfloat16).to_type(float32).eq(ac).all().item<bool>(), Is.True);
            TestContext.Out.WriteLine($"max |bf16 - f32| = {maxDiff:g3} (max |y| = {maxMag:g3}), mean relative = {rel:g3}");
        }

        [Test]
        public void Backward_outside_the_region_gives_float32_gradients_to_float32_parameters()
        {
            using var d = NewDisposeScope();
            manual_seed(2);
            var lin = nn.Linear(4, 2);
            var x = randn(8, 4);
            Tensor loss;
            using (Amp.autocast(DeviceType.CPU))
                loss = F.mse_loss(lin.call(x), zeros(8, 2));
            Assert.That(loss.dtype, Is.EqualTo(ScalarType.Float32), "mse_loss is on the float32 list");
            loss.backward();
            Assert.That(lin.weight!.grad!.dtype, Is.EqualTo(ScalarType.Float32));
            Assert.That(lin.bias!.grad!.dtype, Is.EqualTo(ScalarType.Float32));
        }

        private const int N = 256;
        private const int Steps = 150;

        /// <summary>y = 2 x1 - 3 x2 + x3 + 0.5 (+ small noise), full-batch SGD on a Linear(3, 1).</summary>
        private static (double finalLoss, float[] weights, float bias, int skipped, double scale) Train(
            ScalarType? autocastDtype, GradScaler? scaler)
        {
            using var d = NewDisposeScope();
            manual_seed(42);
            var x = randn(N, 3);
            var w = tensor(new float[] { 2, -3, 1 }).reshape(3, 1);
            var y = x.matmul(w) + 0.5f + 0.01f * randn(N, 1);
            var model = nn.Linear(3, 1);
            var opt = optim.SGD(model.parameters(), 0.1);
            int skipped = 0;
            for (int step = 0; step < Steps; step++)
            {
                using var s = NewDisposeScope();
                opt.zero_grad();
                Tensor loss;
                if (autocastDtype is { } dt)
                {
                    using (Amp.autocast(DeviceType.CPU, dt))
                        loss = F.mse_loss(model.call(x), y);
                }
                else
                {
                    loss = F.mse_loss(model.call(x), y);
                }
                if (scaler is null)
                {
                    loss.backward();
                    opt.step();
                }
                else
                {
                    scaler.scale(loss).backward();
                    if (!scaler.step(opt)) skipped++;
                    scaler.update();
                }
            }
            using (no_grad())
            {
                var final = F.mse_loss(model.call(x), y).item<float>();
                return (final, model.weight!.detach().reshape(-1).data<float>().ToArray(), model.bias!.item<float>(),
                    skipped, scaler?.get_scale() ?? 1.0);
            }
        }

        [Test]
        public void Bfloat16_autocast_training_converges_to_the_float32_loss()
        {
            var f32 = Train(null, null);
            var bf16 = Train(ScalarType.BFloat16, null);
            TestContext.Out.WriteLine($"float32 loss {f32.finalLoss:g4} w=[{string.Join(", ", f32.weights)}] b={f32.bias}");
            TestContext.Out.WriteLine($"bf16    loss {bf16.finalLoss:g4} w=[{string.Join(", ", bf16.weights)}] b={bf16.bias}");
            Assert.That(f32.finalLoss, Is.LessThan(2e-4), "float32 reaches the noise floor (1e-4)");
            Assert.That(bf16.finalLoss, Is.EqualTo(f32.finalLoss).Within(2.5e-4), "bf16 rounding adds ~1e-4 to the loss floor");
            Assert.That(bf16.weights, Is.EqualTo(new[] { 2f, -3f, 1f }).Within(0.02f));
            Assert.That(bf16.bias, Is.EqualTo(0.5f).Within(0.02f));
        }

        [Test]
        public void Float16_autocast_with_a_grad_scaler_trains_too()
        {
            var f32 = Train(null, null);
            // A small growth interval makes the scale grow until float16 gradients overflow, so the run exercises
            // skipped steps and backoff as well.
            var scaler = new GradScaler(init_scale: 1024.0, growth_interval: 10);
            var fp16 = Train(ScalarType.Float16, scaler);
            TestContext.Out.WriteLine($"fp16+scaler loss {fp16.finalLoss:g4} w=[{string.Join(", ", fp16.weights)}] b={fp16.bias} skipped={fp16.skipped} scale={fp16.scale}");
            Assert.That(fp16.finalLoss, Is.EqualTo(f32.finalLoss).Within(1e-4));
            Assert.That(fp16.weights, Is.EqualTo(new[] { 2f, -3f, 1f }).Within(0.02f));
            Assert.That(fp16.scale, Is.GreaterThan(1024.0), "the scale grew");
            Assert.That(fp16.skipped, Is.GreaterThan(0), "the scale grew into float16 overflow at least once");
            Assert.That(fp16.skipped, Is.LessThan(Steps / 5));
        }
    }
}
