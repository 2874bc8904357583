using System;
using System.Collections.Generic;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.CallPath
{
    /// <summary>
    /// How the call path tells a call that threw (and whose exception was caught) from one still under way: TorchSharp's
    /// <c>call</c> has no <c>finally</c>, so the frame of a failed call stays until something notices. A live call must
    /// never be finished early — its checkpoint, precision region and always_call hooks would run in the middle of its
    /// forward (a checkpointed two-input module lost its output's gradient that way, in long test runs only).
    /// </summary>
    public class AbandonedCallTests
    {
        private sealed class Parent : nn.Module<Tensor, Tensor, Tensor>
        {
            public readonly Linear child = nn.Linear(2, 2);
            public readonly Linear other = nn.Linear(2, 2);
            public Parent() : base("Parent") { RegisterComponents(); }
            public override Tensor forward(Tensor a, Tensor b) => other.call(child.call(a) + b);
        }

        /// <summary>Runs <paramref name="body"/> with a call of a wrapped <see cref="Parent"/>'s root pushed on this thread's stack (unwound after).</summary>
        private static void WithRootCall(Action<Func<string, HookPoint>, CallStack, CallFrame> body)
        {
            var m = new Parent().WithHooks();
            var stack = CallStack.Current;
            Assume.That(stack.Count, Is.Zero, "no call under way on this thread");
            var frame = stack.Push();
            frame.Node = m[""];
            frame.StackMark = CallStack.Mark();
            try { body(path => m[path], stack, frame); }
            finally { stack.Unwind(0, new List<Exception>()); }
        }

        private static void ThrowAndCatch()
        {
            try { throw new InvalidOperationException("caught"); }
            catch (InvalidOperationException) { }
        }

        [Test(Description = "A nested call whose mark lies above its parent's (the parent's pre-hook chain was deeper than the whole path to the nested call: seen after tier-1 compilation) does not finish the parent when nothing was thrown")]
        public void A_live_call_is_not_finished_when_nothing_was_thrown()
        {
            WithRootCall((at, stack, frame) =>
            {
                Assert.That(stack.FinishAbandoned(frame.StackMark + 48, at("child")), Is.False);
                Assert.That(stack.FinishAbandoned(frame.StackMark + 48, at("other")), Is.False);
                Assert.That(stack.Count, Is.EqualTo(1));
            });
        }

        [Test(Description = "After an exception was thrown and caught, a submodule's call just above the parent's mark (within the hook-chain margin) is still taken as nested: the parent stays")]
        public void A_submodule_call_within_the_margin_is_nested_even_after_a_throw()
        {
            WithRootCall((at, stack, frame) =>
            {
                ThrowAndCatch();
                Assert.That(stack.FinishAbandoned(frame.StackMark + 48, at("child")), Is.False);
                Assert.That(stack.Count, Is.EqualTo(1));
            });
        }

        [Test(Description = "After a throw, the same module called again at about the same depth (a retry after a caught failure of a direct call) finishes the failed call first")]
        public void A_retry_after_a_caught_failure_finishes_the_failed_call()
        {
            WithRootCall((at, stack, frame) =>
            {
                ThrowAndCatch();
                Assert.That(stack.FinishAbandoned(frame.StackMark + 48, at("")), Is.True);
                Assert.That(stack.Count, Is.Zero);
            });
        }

        [Test(Description = "After a throw, a call far shallower than the frame's mark (beyond any hook chain) finishes it, whatever module calls")]
        public void A_call_beyond_the_margin_finishes_the_failed_call()
        {
            WithRootCall((at, stack, frame) =>
            {
                ThrowAndCatch();
                Assert.That(stack.FinishAbandoned(frame.StackMark + (nuint)CallStack.ChainMargin + 16, at("child")), Is.True);
                Assert.That(stack.Count, Is.Zero);
            });
        }

        [Test(Description = "A call deeper than the frame's mark never finishes it, even after a throw")]
        public void A_deeper_call_never_finishes_the_frame()
        {
            WithRootCall((at, stack, frame) =>
            {
                ThrowAndCatch();
                Assert.That(stack.FinishAbandoned(frame.StackMark - 64, at("")), Is.False);
                Assert.That(stack.Count, Is.EqualTo(1));
            });
        }

        private sealed class TuplePair : nn.Module<Tensor, Tensor, (Tensor, Tensor)>
        {
            public readonly Linear child = nn.Linear(2, 2);
            public readonly Linear other = nn.Linear(2, 2);
            public TuplePair() : base("TuplePair") { RegisterComponents(); }
            public override (Tensor, Tensor) forward(Tensor a, Tensor b) => (a * b + child.call(a), other.call(b).tanh());
        }

        [Test(Description = "End to end: a two-input root whose forward calls its children, hooked and checkpointed, keeps its call open through its forward (its always_call hook runs once, after the children's)")]
        public void Multi_input_root_keeps_its_call_open_through_its_forward()
        {
            var m = new TuplePair().WithHooks();
            var order = new List<string>();
            using var h1 = m["child"].register_forward_hook((mod, x, y) => { order.Add("child"); return null; });
            using var h2 = m["other"].register_forward_hook((mod, x, y) => { order.Add("other"); return null; });
            using var h3 = m.register_forward_hook((mod, a, b, y) => { order.Add("root"); return null; }, always_call: true);
            using var policy = m.Checkpoint(p => p.Path == "");
            using var a = randn(3, 2).requires_grad_();
            using var b = randn(3, 2);
            for (int i = 0; i < 200; i++)   // long enough for the JIT to tier the call path up
            {
                order.Clear();
                var (y, y2) = m.call(a, b);
                y2.Dispose();
                Assert.That(y.requires_grad, "the checkpointed root's output has its gradient edge");
                Assert.That(order, Is.EqualTo(new[] { "child", "other", "root" }));
                Assert.That(CallStack.Current.Count, Is.Zero);
                y.Dispose();
            }
        }
    }
}
