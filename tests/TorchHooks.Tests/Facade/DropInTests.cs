using System;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Facade
{
    /// <summary>Wrapping must not change what the model is: parameters, state, modes, devices, files, uses.</summary>
    [TestFixture]
    public class DropInTests
    {
        [Test]
        public void ParametersAreTheSameObjects()
        {
            var net = new GoldenNet();
            var m = net.WithHooks();
            var mine = m.parameters().ToArray();
            var theirs = net.parameters().ToArray();
            Assert.That(mine, Has.Length.EqualTo(theirs.Length));
            for (int i = 0; i < mine.Length; i++)
                Assert.That(mine[i], Is.SameAs(theirs[i]), $"parameter {i}");
            Assert.That(m.named_parameters().Select(p => p.name), Is.EqualTo(net.named_parameters().Select(p => p.name)));
        }

        [Test]
        public void StateDictKeysAreIdentical()
        {
            var net = nn.Sequential(("conv", nn.Conv2d(1, 2, 3)), ("bn", nn.BatchNorm2d(2)), ("act", nn.ReLU()));
            var expected = net.state_dict().Keys.ToArray();
            var m = net.WithHooks();
            Assert.That(m.state_dict().Keys, Is.EqualTo(expected));
            Assert.That(expected, Does.Contain("bn.running_mean"), "buffers are included");
            Assert.That(m.named_modules().Select(n => n.name), Is.EqualTo(net.named_modules().Select(n => n.name)));
            Assert.That(m.named_buffers().Select(n => n.name), Is.EqualTo(net.named_buffers().Select(n => n.name)));
        }

        [Test]
        public void TrainEvalReachEverySubmodule()
        {
            var net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2)));
            var m = net.WithHooks();
            m.eval();
            Assert.That(net.modules().Prepend(net).All(x => !x.training), Is.True);
            Assert.That(m.training, Is.False);
            m.train();
            Assert.That(net.modules().Prepend(net).All(x => x.training), Is.True);
            Assert.That(m.training, Is.True);
        }

        [Test]
        public void ToDtypeConvertsTheWrappedModel()
        {
            var net = nn.Sequential(nn.Linear(2, 2));
            var m = net.WithHooks();
            var same = m.to(float64);
            Assert.That(same, Is.SameAs(m), "to() returns the facade, like PyTorch returns self");
            Assert.That(net.parameters().All(p => p.dtype == float64), Is.True);
            using var x = ones(1, 2, dtype: float64);
            using var y = m.call(x);
            Assert.That(y.dtype, Is.EqualTo(float64));
        }

        [Test]
        public void ZeroGradReachesTheWrappedModel()
        {
            var net = nn.Linear(2, 1);
            var m = net.WithHooks();
            using (var y = m.call(ones(3, 2))) using (var s = y.sum()) s.backward();
            Assert.That(net.weight!.grad, Is.Not.Null);
            m.zero_grad();
            Assert.That(net.weight!.grad, Is.Null);
        }

        [Test]
        public void SavedFromOneLoadsIntoTheOther()
        {
            var dir = Path.Combine(Path.GetTempPath(), "torchhooks-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            try
            {
                var a = new GoldenNet();
                var wrapped = a.WithHooks();
                wrapped.save(Path.Combine(dir, "wrapped.bin"));
                var b = new GoldenNet();
                using (no_grad()) foreach (var p in b.parameters()) p.zero_();
                b.load(Path.Combine(dir, "wrapped.bin"));
                using var x = GoldenNet.Input();
                using (var ya = a.call(x)) using (var yb = b.call(x)) Assert.That(TensorAssert.Values(yb), Is.EqualTo(TensorAssert.Values(ya)));

                a.save(Path.Combine(dir, "plain.bin"));
                var c = new GoldenNet();
                using (no_grad()) foreach (var p in c.parameters()) p.zero_();
                var cw = c.WithHooks();
                Assert.That(cw.load(Path.Combine(dir, "plain.bin")), Is.SameAs(cw));
                using (var ya = a.call(x)) using (var yc = cw.call(x)) Assert.That(TensorAssert.Values(yc), Is.EqualTo(TensorAssert.Values(ya)));
            }
            finally { Directory.Delete(dir, recursive: true); }
        }

        [Test]
        public void WorksInsideSequentialAnOptimizerAndACustomModule()
        {
            var inner = nn.Linear(3, 3);
            var facade = inner.WithHooks();
            int fired = 0;
            using var h = facade.register_forward_hook((mod, x, y) => { fired++; return null; });
            var seq = nn.Sequential(("block", facade), ("head", nn.Linear(3, 1)));
            Assert.That(seq.state_dict().Keys, Is.EqualTo(new[] { "block.weight", "block.bias", "head.weight", "head.bias" }));
            var opt = optim.SGD(seq.parameters(), 0.1);
            using var before = inner.weight!.clone();
            using (var y = seq.call(ones(2, 3))) using (var s = y.sum()) s.backward();
            opt.step();
            Assert.That(fired, Is.EqualTo(1), "hooks fire when a Sequential calls the facade");
            Assert.That(TensorAssert.Values(inner.weight!), Is.Not.EqualTo(TensorAssert.Values(before)), "the optimizer updated the wrapped model's own weight");

            var custom = new Holder(facade);
            using (custom.call(ones(1, 3))) { }
            Assert.That(fired, Is.EqualTo(2));
            Assert.That(custom.state_dict().Keys, Is.EqualTo(new[] { "block.weight", "block.bias" }));
        }

        private sealed class Holder : nn.Module<Tensor, Tensor>
        {
            private readonly nn.Module<Tensor, Tensor> block;
            public Holder(nn.Module<Tensor, Tensor> block) : base("Holder") { this.block = block; RegisterComponents(); }
            public override Tensor forward(Tensor x) => block.call(x);
        }

        [Test]
        public void UnwrapGivesTheOriginalAndWrappingIsIdempotent()
        {
            var net = nn.Linear(2, 2);
            var m = net.WithHooks();
            Assert.That(m.Unwrap(), Is.SameAs(net));
            Assert.That(m.Module, Is.SameAs(net));
            Assert.That(m.WithHooks(), Is.SameAs(m), "wrapping a facade returns it");
            Assert.That(net.WithHooks(), Is.SameAs(m), "wrapping the same model twice returns the same facade");
        }

        [Test]
        public void OutputsAndGradientsAreBitForBitTheUnwrappedOnes()
        {
            var plain = new GoldenNet();
            var other = new GoldenNet();
            var m = other.WithHooks();
            using var observe = m["shared"].register_forward_hook((mod, x, y) => null);   // an active, non-replacing hook
            using var x1 = GoldenNet.Input().requires_grad_(true);
            using var x2 = GoldenNet.Input().requires_grad_(true);
            using var y1 = plain.call(x1);
            using var y2 = m.call(x2);
            using (var s = y1.sum()) s.backward();
            using (var s = y2.sum()) s.backward();
            Assert.That(TensorAssert.Values(y2), Is.EqualTo(TensorAssert.Values(y1)));
            Assert.That(TensorAssert.Values(x2.grad!), Is.EqualTo(TensorAssert.Values(x1.grad!)));
            foreach (var ((n, p1), (_, p2)) in plain.named_parameters().Zip(other.named_parameters()))
                Assert.That(TensorAssert.Values(p2.grad!), Is.EqualTo(TensorAssert.Values(p1.grad!)), n);
            var golden = Goldens.Load("hooks", "hooks.json").GetProperty("plain_output").Doubles();
            TensorAssert.Close(y2, golden, 1e-12, "and they equal PyTorch's");
        }
    }
}
