using System.Collections.Generic;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Analyzers
{
    /// <summary>
    /// The runtime facts behind TH0002 (docs/diagnostics/TH0002.md): a tensor a hook was given and stored as it is
    /// is disposed by its owner after the call; the fixes the diagnostic suggests survive.
    /// </summary>
    [TestFixture]
    public class HookTensorEscapeTrapTests
    {
        private static HookedModule<Tensor, Tensor> Model() =>
            nn.Sequential(("0", nn.Linear(4, 3)), ("1", nn.ReLU()), ("2", nn.Linear(3, 2))).WithHooks();

        [Test]
        public void SequentialDisposesAStoredIntermediateOutput()
        {
            var m = Model();
            var kept = new List<Tensor>();
            using var h = m["0"].register_forward_hook((mod, x, y) => { kept.Add(y); return null; });
            using var x = ones(2, 4);
            using var y = m.call(x);
            Assert.That(kept, Has.Count.EqualTo(1));
            Assert.That(kept[0].IsInvalid, Is.True, "Sequential disposes the output of layer 0 once layer 1 has run");
        }

        [Test]
        public void DisposeScopeDisposesAStoredOutput()
        {
            var lin = nn.Linear(4, 3);
            var m = lin.WithHooks();
            var kept = new List<Tensor>();
            using var h = m.register_forward_hook((mod, x, y) => { kept.Add(y); return null; });
            using (NewDisposeScope())
            {
                m.call(ones(2, 4));
            }
            Assert.That(kept[0].IsInvalid, Is.True, "the scope disposes everything created inside it");
        }

        [Test, Description("Issue 20 item 9: the gradient a full backward hook was handed, stored as it is, is released after the pass (Grad-CAM's idiom); a detached clone survives")]
        public void BackwardPassReleasesAStoredGradient()
        {
            var m = Model();
            var kept = new List<Tensor>();
            var copies = new List<Tensor>();
            using var h = m["2"].register_full_backward_hook((mod, grad_input, grad_output) =>
            {
#pragma warning disable TH0002   // the trap itself (the analyzer flags this line for package users)
                kept.Add(grad_output[0]!);
#pragma warning restore TH0002
                copies.Add(grad_output[0]!.detach().clone().DetachFromDisposeScope());
                return null;
            });
            using var x = ones(2, 4);
            using (NewDisposeScope())
            {
                m.call(x).sum().Backward();
            }
            Assert.That(kept, Has.Count.EqualTo(1));
            Assert.That(kept[0].IsInvalid, Is.True, "the stored gradient is gone after the pass");
            Assert.That(copies[0].IsInvalid, Is.False);
            Assert.That(copies[0].shape, Is.EqualTo(new long[] { 2, 2 }));
            copies[0].Dispose();
        }

        [Test]
        public void AnAliasDetachedFromTheScopeOrACloneSurvives()
        {
            var first = nn.Linear(4, 3);
            var m = nn.Sequential(("0", first), ("1", nn.ReLU()), ("2", nn.Linear(3, 2))).WithHooks();
            var aliases = new List<Tensor>();
            var clones = new List<Tensor>();
            using var h = m["0"].register_forward_hook((mod, x, y) =>
            {
                aliases.Add(y.alias().DetachFromDisposeScope());
                clones.Add(y.detach().clone().DetachFromDisposeScope());
                return null;
            });
            using var input = ones(2, 4);
            using (NewDisposeScope())
            {
                m.call(input);
            }
            Assert.That(aliases[0].IsInvalid, Is.False);
            Assert.That(clones[0].IsInvalid, Is.False);
            using (no_grad())
            using (var expected = first.forward(input))   // the layer's output, recomputed for comparison
            {
                Assert.That(aliases[0].allclose(expected), Is.True);
                Assert.That(clones[0].allclose(expected), Is.True);
            }
            aliases[0].Dispose();
            clones[0].Dispose();
        }
    }
}
