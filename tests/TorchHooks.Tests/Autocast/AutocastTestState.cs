using System;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>Checks that a test leaves its thread without autocast, and resets it if not (so one failure doesn't spread).</summary>
    internal static class AutocastTestState
    {
        public static void AssertClean(string when)
        {
            Assert.That(AutocastStack.Depth, Is.EqualTo(0), $"TorchHooks autocast regions open {when}");
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0), $"libtorch autocast nesting {when}");
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False, $"CPU autocast {when}");
            Assert.That(Amp.is_autocast_enabled(DeviceType.CUDA), Is.False, $"CUDA autocast {when}");
        }

        public static void AssertCleanAndReset()
        {
            int depth = AutocastStack.Depth;
            long nesting = AutocastNative.CurrentNesting();
            bool cpu = Amp.is_autocast_enabled(DeviceType.CPU);
            bool cuda = Amp.is_autocast_enabled(DeviceType.CUDA);
            if (depth != 0 || nesting != 0 || cpu || cuda)
            {
                AutocastStack.ResetThread();
                Assert.Fail($"the test left autocast state behind: regions={depth} nesting={nesting} cpu={cpu} cuda={cuda}");
            }
        }
    }

    /// <summary>The full autocast state of the thread at construction, to compare later.</summary>
    internal sealed class TestAutocastSnapshot
    {
        private readonly AutocastState _state = AutocastState.Capture();

        public void AssertUnchanged() => Assert.That(AutocastState.Capture(), Is.EqualTo(_state));
    }

    /// <summary>Base of the autocast fixtures: each test starts and ends without autocast on its thread.</summary>
    public abstract class AutocastTestBase
    {
        [SetUp]
        public void StartClean()
        {
            AutocastTestState.AssertClean("before the test");
            CastCache.ResetThread();   // every autocast test starts in PyTorch's cache mode (docs/autocast.md, "Weight casts kept across regions")
        }

        [TearDown]
        public void EndClean() => AutocastTestState.AssertCleanAndReset();

        /// <summary>The dtype a Linear computes in on this thread now (bf16 inside a CPU bf16 region).</summary>
        protected static ScalarType LinearDtype()
        {
            using var d = NewDisposeScope();
            using var x = ones(2, 3);
            using var w = ones(4, 3);
            return torch.nn.functional.linear(x, w).dtype;
        }
    }
}
