using System;
using NUnit.Framework;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Backward
{
    /// <summary>
    /// The custom autograd node (src/TorchHooks/Autograd/AutogradNode.cs) as an internal API: identity nodes (backward
    /// hooks) and nodes whose forward the caller computed (what activation checkpointing needs), pooled callbacks, and
    /// a site's exception stashed instead of aborting the process.
    /// </summary>
    [TestFixture]
    public class AutogradNodeTests
    {
        private sealed class Doubling : GradientSite
        {
            public int Calls;
            public override Tensor?[] OnBackward(Tensor?[] grads)
            {
                Calls++;
                var g = grads[0]! * 2;   // d(2x)/dx = 2
                PendingGradients.Add(g);
                return new Tensor?[] { g };
            }
            public override string Where => "test: doubling";
        }

        private sealed class Throwing : GradientSite
        {
            public override Tensor?[] OnBackward(Tensor?[] grads) => throw new InvalidOperationException("site fails on purpose");
            public override string Where => "test: throwing";
        }

        [Test(Description = "a node whose forward the caller computed without grad: its site gives the input gradient")]
        public void NodeWithCallerComputedForward()
        {
            using var x = tensor(new[] { 1.0, 2.0, 3.0 }, requires_grad: true);
            Tensor y;
            using (no_grad()) y = x * 2;
            Assert.That(y.requires_grad, Is.False);
            var site = new Doubling();
            var results = new Tensor[1];
            AutogradNode.Apply(site, new[] { x }, new[] { y }, results);
            using var z = results[0];
            Assert.That(z.requires_grad, Is.True);
            using (var loss = (z * z).sum()) loss.Backward();   // dL/dz = 2z = 4x; dL/dx = 2 * 4x = 8x
            Assert.That(site.Calls, Is.EqualTo(1));
            Assert.That(TensorAssert.Values(x.grad!), Is.EqualTo(new[] { 8.0, 16.0, 24.0 }));
            y.Dispose();
        }

        [Test(Description = "identity nodes: views of their inputs; callback slots are reused, not one per node")]
        public void IdentityNodesReuseTheirSlots()
        {
            using var x = ones(2, 3, requires_grad: true);
            var site = new Doubling();
            void Step()
            {
                using var d = NewDisposeScope();
                var v = AutogradNode.Identity(site, new[] { x });
                v[0].sum().Backward();
            }
            for (int i = 0; i < 20; i++) Step();
            int slots = AutogradNode.Slots;
            for (int i = 0; i < 500; i++) Step();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Assert.That(AutogradNode.Slots, Is.LessThanOrEqualTo(slots + 4), "slots come back to the pool when libtorch frees a node");
            Assert.That(site.Calls, Is.EqualTo(520));
            Assert.That(TensorAssert.Values(x.grad!)[0], Is.EqualTo(2.0 * 520));
        }

        [Test(Description = "a site that throws: no process abort, the gradient passes through an identity node unchanged, Backward() rethrows")]
        public void ThrowingSiteIsStashed()
        {
            using var x = ones(3, requires_grad: true);
            var v = AutogradNode.Identity(new Throwing(), new[] { x });
            using var loss = v[0].sum();
            var e = Assert.Throws<InvalidOperationException>(() => loss.Backward());
            Assert.That(e!.Data["TorchHooks.BackwardHook"], Is.EqualTo("test: throwing"));
            Assert.That(TensorAssert.Values(x.grad!), Is.EqualTo(new[] { 1.0, 1.0, 1.0 }));
            v[0].Dispose();
        }

        [Test(Description = "every LibTorchSharp export the node binds is found in the runtime this suite runs on")]
        public void EveryBoundExportIsFound()
        {
            Assert.That(AutogradNative.Symbols, Has.Length.EqualTo(10).And.Unique);
            Assert.DoesNotThrow(AutogradNative.EnsureBound);
            Assert.That(AutogradNative.Bound, Is.True);
        }

        [Test]
        public void ApplyRejectsMismatchedSpans()
        {
            using var x = ones(3, requires_grad: true);
            Assert.Throws<ArgumentException>(() => AutogradNode.Apply(new Doubling(), new[] { x }, new[] { x }, new Tensor[2]));
            Assert.Throws<ArgumentException>(() => AutogradNode.Apply(new Doubling(), Array.Empty<Tensor>(), new[] { x }, new Tensor[1]));
        }
    }
}
