using System.Linq;
using NUnit.Framework;
using TorchHooks;

namespace TorchHooks.Tests.CallPath
{
    /// <summary>The seam: every concern is one line of CallPath.Concerns, and its place gives PyTorch's order.</summary>
    public class CallConcernTests
    {
        [Test(Description = "Way in: tracing first, then forward pre-hooks, then the backward input wrap, then the precision region opens; way out (and failure): the region closes, then the forward hooks run, then the backward output wrap, tracing last (PyTorch's _call_impl)")]
        public void ConcernsRunInPyTorchsOrder()
        {
            var inOrder = TorchHooks.CallPath.InOrder.ToList();
            var outOrder = TorchHooks.CallPath.OutOrder.ToList();
            Assert.That(inOrder.IndexOf(ForwardHooksConcern.Instance), Is.LessThan(inOrder.IndexOf(BackwardHooksConcern.Instance)));
            Assert.That(inOrder.IndexOf(BackwardHooksConcern.Instance), Is.LessThan(inOrder.IndexOf(PrecisionConcern.Instance)));
            Assert.That(outOrder.IndexOf(PrecisionConcern.Instance), Is.LessThan(outOrder.IndexOf(ForwardHooksConcern.Instance)));
            Assert.That(outOrder.IndexOf(ForwardHooksConcern.Instance), Is.LessThan(outOrder.IndexOf(BackwardHooksConcern.Instance)));
            Assert.That(inOrder[0], Is.SameAs(TracingConcern.Instance));
            Assert.That(outOrder[^1], Is.SameAs(TracingConcern.Instance));
            Assert.That(inOrder, Is.EquivalentTo(TorchHooks.CallPath.Concerns.Select(c => c.Concern)), "every concern runs on the way in");
            Assert.That(outOrder, Is.EquivalentTo(TorchHooks.CallPath.Concerns.Select(c => c.Concern)), "every concern runs on the way out");
        }

        [Test(Description = "Each concern has its own frame slot")]
        public void EachConcernHasItsOwnSlot()
        {
            var slots = TorchHooks.CallPath.Concerns.Select(c => c.Concern.Slot).ToArray();
            Assert.That(slots, Is.EqualTo(Enumerable.Range(0, slots.Length).ToArray()));
        }
    }
}
