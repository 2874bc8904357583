using System.Linq;
using NUnit.Framework;
using TorchHooks;

namespace TorchHooks.Tests.CallPath
{
    /// <summary>The seam: every concern is one line of CallPath.Concerns, and its place gives PyTorch's order.</summary>
    public class CallConcernTests
    {
        [Test(Description = "Way in: tracing first, forward pre-hooks before the precision region opens; way out (and failure): the region closes before the forward hooks run, tracing last")]
        public void ConcernsRunInPyTorchsOrder()
        {
            Assert.That(TorchHooks.CallPath.InOrder, Is.EqualTo(new CallConcern[] { TracingConcern.Instance, ForwardHooksConcern.Instance, PrecisionConcern.Instance }));
            Assert.That(TorchHooks.CallPath.OutOrder, Is.EqualTo(new CallConcern[] { PrecisionConcern.Instance, ForwardHooksConcern.Instance, TracingConcern.Instance }));
        }

        [Test(Description = "Each concern has its own frame slot")]
        public void EachConcernHasItsOwnSlot()
        {
            var slots = TorchHooks.CallPath.Concerns.Select(c => c.Concern.Slot).ToArray();
            Assert.That(slots, Is.EqualTo(Enumerable.Range(0, slots.Length).ToArray()));
        }
    }
}
