using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Facade
{
    /// <summary>TorchSharp-specific reach of the facade: every call through <c>call</c> anywhere in the tree.</summary>
    [TestFixture]
    public class TreeTests
    {
        [Test]
        public void PathsFollowNamedModulesWithTheRootFirst()
        {
            var m = new GoldenNet().WithHooks();
            Assert.That(m.Paths, Is.EqualTo(new[] { "", "enc", "shared", "dec", "enc.0", "enc.1", "dec.0" }));
            Assert.That(m[""], Is.SameAs(m.Root));
            Assert.That(m["enc.0"].Module, Is.InstanceOf<Linear>());
            Assert.That(m["enc.0"].Signature, Is.EqualTo("Module<Tensor, Tensor>"));
        }

        [Test]
        public void SharedModuleFiresTwiceWithIncreasingCallIndex()
        {
            var m = new GoldenNet().WithHooks();
            var seen = new List<(string, int)>();
            using var h = m["shared"].register_forward_hook((mod, x, y) =>
            {
                var info = ModuleCallInfo.Current;
                seen.Add((info.Path, info.CallIndex));
                return null;
            });
            using var x = GoldenNet.Input();
            using (m.call(x)) { }
            using (m.call(x)) { }
            Assert.That(seen, Is.EqualTo(new[] { ("shared", 0), ("shared", 1), ("shared", 0), ("shared", 1) }),
                "call indices count within one facade call and start again with the next");
        }

        [Test]
        public void CallIndicesRestartForEachOutermostCallWithoutAFacade()
        {
            var net = new GoldenNet();
            var m = net.WithHooks();
            var seen = new List<int>();
            using var root = m.register_forward_hook((mod, x, y) => null);
            using var h = m["shared"].register_forward_hook((mod, x, y) => { seen.Add(ModuleCallInfo.Current.CallIndex); return null; });
            using var x = GoldenNet.Input();
            using (m.call(x)) { }
            using (net.call(x)) { }
            using (net.forward(x)) { }
            // forward skips the root's call path, so each shared call is an outermost call of its own.
            Assert.That(seen, Is.EqualTo(new[] { 0, 1, 0, 1, 0, 0 }));
        }

        [Test]
        public void CustomForwardCallingChildrenOfEveryArityIsDispatched()
        {
            var m = new AllArities().WithHooks();
            var fired = new List<string>();
            var scope = new HookScope();
            scope.Add(m["split"].register_forward_hook<Tensor, (Tensor, Tensor)>((mod, x, y) => { fired.Add("split"); return null; }));
            scope.Add(m["add2"].register_forward_hook<Tensor, Tensor, Tensor>((mod, a, b, y) => { fired.Add("add2"); return null; }));
            scope.Add(m["add3"].register_forward_hook<Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, y) => { fired.Add("add3"); return null; }));
            scope.Add(m["add4"].register_forward_pre_hook<Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, d) => { fired.Add("add4-pre"); return null; }));
            scope.Add(m["add4"].register_forward_hook<Tensor, Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, d, y) => { fired.Add("add4"); return null; }));
            scope.Add(m["add5"].register_forward_hook<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, d, e, y) => { fired.Add("add5"); return null; }));
            scope.Add(m["add6"].register_forward_pre_hook<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, d, e, f) => (a, b, c, d, e, f * 0)));
            scope.Add(m["add6"].register_forward_hook<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>((mod, a, b, c, d, e, f, y) => { fired.Add("add6"); return y + 0.5; }));
            using (scope)
            {
                using var x = ones(1);
                using var y = m.call(x);
                Assert.That(fired, Is.EqualTo(new[] { "split", "add2", "add3", "add4-pre", "add4", "add5", "add6" }));
                // split: a=2, b=3; s2=5; s3=5+20+300=325; s4=325+2+3+1=331; s5=331+2+3+1+1=338; s6=338+2+3+1+1+0 (f zeroed) + 0.5
                Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 345.5 }));
            }
            using (var y = m.call(ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 346.0 }), "the scope removed its hooks");
        }

        [Test]
        public void ModuleListLoopCallsAreDispatched()
        {
            var m = new Stack().WithHooks();
            var paths = new List<string>();
            using var h = ModuleHooks.register_module_forward_hook((mod, x, y) => { paths.Add(ModuleCallInfo.Current.Path); return null; });
            using (m.call(ones(1, 2))) { }
            Assert.That(paths, Is.EqualTo(new[] { "layers.0", "layers.1", "layers.2", "" }));
        }

        private sealed class Stack : nn.Module<Tensor, Tensor>
        {
            private readonly ModuleList<nn.Module<Tensor, Tensor>> layers = new(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2));
            public Stack() : base("Stack") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                var h = x.alias();
                foreach (var layer in layers) { var next = layer.call(h); h.Dispose(); h = next; }
                return h;
            }
        }

        [Test]
        public void RootsOfEveryArityHaveAFacade()
        {
            var m2 = new Add2().WithHooks();
            using (m2.register_forward_pre_hook((mod, a, b) => (a * 2, b)))
            using (m2.register_forward_hook((mod, a, b, y) => y + 0.25))
            using (var y = m2.call(ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 3.25 }));
            Assert.That(new Add2().WithHooks().Module, Is.InstanceOf<Add2>());

            var m3 = new Add3().WithHooks();
            using (m3.register_forward_hook((mod, a, b, c, y) => -y)) using (var y = m3.call(ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { -111.0 }));
            var m4 = new Add4().WithHooks();
            using (m4.register_forward_pre_hook((mod, a, b, c, d) => (a, b, c, d * 0))) using (var y = m4.call(ones(1), ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 3.0 }));
            var m5 = new Add5().WithHooks();
            using (m5.register_forward_hook((mod, a, b, c, d, e, y) => y * 2)) using (var y = m5.call(ones(1), ones(1), ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 10.0 }));
            var m6 = new Add6().WithHooks();
            Assert.That(m6.WithHooks(), Is.SameAs(m6));
            using (m6.register_forward_hook((mod, a, b, c, d, e, f, y) => y * 2)) using (var y = m6.call(ones(1), ones(1), ones(1), ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 12.0 }));
        }

        [Test]
        public void MultiInputRootRunsAlwaysCallHooksWhenAChildThrows()
        {
            var m = new TwoInputWithFailingChild().WithHooks();
            int always = 0;
            using var h = m["bad"].register_forward_hook((mod, x, y) => { always++; return null; }, always_call: true);
            Assert.Throws<InvalidOperationException>(() => m.call(ones(1), ones(1)));
            Assert.That(always, Is.EqualTo(1));
            Assert.That(CallStack.Current.Count, Is.Zero);
        }

        [Test]
        public void ChildExceptionCaughtInsideParentForwardFinishesTheChildCall()
        {
            var m = new Catching().WithHooks();
            var order = new List<string>();
            using var h = m["bad"].register_forward_hook((mod, x, y) => { order.Add("bad:always"); return null; }, always_call: true);
            using var r = m.register_forward_hook((mod, x, y) => { order.Add("root"); return null; });
            using (m.call(ones(1))) { }
            Assert.That(order, Is.EqualTo(new[] { "bad:always", "root" }), "the abandoned child call is finished before the parent's hooks");
            Assert.That(CallStack.Current.Count, Is.Zero);
        }

        private sealed class Catching : nn.Module<Tensor, Tensor>
        {
            private readonly Failing bad = new();
            public Catching() : base("Catching") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                try { return bad.call(x); }
                catch (InvalidOperationException) { return x.alias(); }
            }
        }

        [Test]
        public void DirectCallOfAnUnwrappedModuleThatThrewIsFinishedAtItsNextCall()
        {
            var failing = new Failing();
            _ = failing.WithHooks();
            int always = 0;
            using var h = ModuleHooks.register_module_forward_hook((mod, x, y) => { always++; return null; }, always_call: true);
            Assert.Throws<InvalidOperationException>(() => failing.call(ones(1)));
            Assert.That(CallStack.Current.Count, Is.EqualTo(1), "no facade call was there to finish it");
            Assert.Throws<InvalidOperationException>(() => failing.call(ones(1)));
            Assert.That(always, Is.EqualTo(1), "the first call was finished when the second began");
            Assert.That(CallStack.Current.Count, Is.EqualTo(1), "frames don't pile up");
            var stack = CallStack.Current;
            stack.Unwind(0, new List<Exception>());
        }

        private sealed class TwoInputWithFailingChild : nn.Module<Tensor, Tensor, Tensor>
        {
            private readonly Failing bad = new();
            public TwoInputWithFailingChild() : base("TwoInput") { RegisterComponents(); }
            public override Tensor forward(Tensor a, Tensor b) => bad.call(a + b);
        }

        [Test]
        public void NativeModulesAreHookableAtTheirBoundary()
        {
            var mha = nn.MultiheadAttention(4, 2);
            var m = new AttentionBlock(mha).WithHooks();
            var point = m["attn"];
            Assert.That(point.Signature, Does.StartWith("Module<Tensor, Tensor, Tensor"));
            int fired = 0;
            using var h = point.register_forward_hook<Tensor, Tensor, Tensor, Tensor?, bool, Tensor?, Tuple<Tensor, Tensor>>((mod, q, k, v, padding, need, mask, y) => { fired++; return null; });
            using var x = ones(3, 1, 4);
            using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(1));
        }

        private sealed class AttentionBlock : nn.Module<Tensor, Tensor>
        {
            private readonly MultiheadAttention attn;
            public AttentionBlock(MultiheadAttention attn) : base("AttentionBlock") { this.attn = attn; RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                var result = attn.call(x, x, x, null, false, null);
                result.Item2?.Dispose();
                return result.Item1;
            }
        }

        [Test]
        public void UnknownPathListsTheNearestValidOnes()
        {
            var m = new GoldenNet().WithHooks();
            var e = Assert.Throws<KeyNotFoundException>(() => _ = m["enc.O"]);
            Assert.That(e!.Message, Does.Contain("'enc.O'").And.Contain("'enc.0'"));
        }

        [Test]
        public void ModuleWithoutForwardIsRejectedWithTheChildrenToHook()
        {
            var m = new Stack().WithHooks();
            var e = Assert.Throws<ArgumentException>(() => _ = m["layers"]);
            Assert.That(e!.Message, Does.Contain("no forward").And.Contain("'layers.0'"));
        }

        [Test]
        public void HookOfTheWrongSignatureNamesTheModuleSignature()
        {
            var m = new AllArities().WithHooks();
            var e = Assert.Throws<ArgumentException>(() => m["add2"].register_forward_hook((mod, x, y) => null));
            Assert.That(e!.ParamName, Is.EqualTo("hook"));
            Assert.That(e.Message, Does.Contain("Module<Tensor, Tensor, Tensor>").And.Contain("add2"));
            Assert.That(m["add2"].ForwardHookCount, Is.Zero, "nothing half-registered");
        }

        [Test]
        public void NullHookIsRejected()
        {
            var m = nn.Linear(1, 1).WithHooks();
            var e = Assert.Throws<ArgumentNullException>(() => m.register_forward_hook(null!));
            Assert.That(e!.ParamName, Is.EqualTo("hook"));
        }

        [Test]
        public void ScopeWithABadPathRegistersNothing()
        {
            var m = new GoldenNet().WithHooks();
            Assert.Throws<KeyNotFoundException>(() => m.Hooks(fwd: new (string, ForwardHook<Tensor, Tensor>)[]
            {
                ("enc.0", (mod, x, y) => null),
                ("nope", (mod, x, y) => null),
            }));
            Assert.That(m["enc.0"].ForwardHookCount, Is.Zero);
        }

        [Test]
        public void ScopeRemovesOnlyItsOwnHooks()
        {
            var m = new GoldenNet().WithHooks();
            var fired = new List<string>();
            using var users = m["enc.0"].register_forward_hook((mod, x, y) => { fired.Add("user"); return null; });
            using (m.Hooks(fwd: new (string, ForwardHook<Tensor, Tensor>)[] { ("enc.0", (mod, x, y) => { fired.Add("scoped"); return null; }) }))
            {
                using (m.Hooks(pre: new (string, ForwardPreHook<Tensor>)[] { ("enc.0", (mod, x) => { fired.Add("inner-pre"); return null; }) }))
                using (m.call(GoldenNet.Input())) { }
                using (m.call(GoldenNet.Input())) { }
            }
            using (m.call(GoldenNet.Input())) { }
            Assert.That(fired, Is.EqualTo(new[] { "inner-pre", "user", "scoped", "user", "scoped", "user" }));
        }

        [Test]
        public void RegisteringAndRemovingHooksInsideAHookAppliesFromTheNextCall()
        {
            var m = nn.Linear(2, 2).WithHooks();
            var fired = new List<string>();
            RemovableHandle? added = null;
            RemovableHandle? self = null;
            self = m.register_forward_hook((mod, x, y) =>
            {
                fired.Add("first");
                added ??= m.register_forward_hook((mod2, x2, y2) => { fired.Add("added"); return null; });
                self!.remove();
                return null;
            });
            using var x = ones(1, 2);
            using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(new[] { "first" }));
            using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(new[] { "first", "added" }));
            added!.remove();
        }

        [Test]
        public void OrderIsDeterministicAfterRemovals()
        {
            var m = nn.Linear(2, 2).WithHooks();
            var fired = new List<int>();
            RemovableHandle Add(int id) => m.register_forward_hook((mod, x, y) => { fired.Add(id); return null; });
            var h1 = Add(1); var h2 = Add(2); var h3 = Add(3);
            h2.remove();
            var h4 = Add(4);
            using (m.call(ones(1, 2))) { }
            Assert.That(fired, Is.EqualTo(new[] { 1, 3, 4 }), "TorchSharp's own hook table would run 1, 4, 3 here");
            h1.remove(); h3.remove(); h4.remove();
        }

        [Test]
        public void HandlesHaveUniqueIdsAndRemoveIsIdempotent()
        {
            var m = nn.Linear(2, 2).WithHooks();
            var a = m.register_forward_hook((mod, x, y) => null);
            var b = ModuleHooks.register_module_forward_pre_hook((mod, x) => null);
            Assert.That(b.id, Is.GreaterThan(a.id));
            a.remove(); a.remove(); a.Dispose();
            b.Dispose(); b.remove();
            Assert.That(a.IsRegistered || b.IsRegistered, Is.False);
            var c = m.register_forward_hook((mod, x, y) => null);
            Assert.That(c.id, Is.GreaterThan(b.id), "ids are never reused");
            c.remove();
        }

        [Test]
        public void CallsFromOtherThreadsGetTheirOwnCallStack()
        {
            var m = new GoldenNet().WithHooks();
            using var h = m["shared"].register_forward_hook((mod, x, y) => null, always_call: true);
            var tasks = Enumerable.Range(0, 4).Select(_ => System.Threading.Tasks.Task.Run(() =>
            {
                for (int i = 0; i < 20; i++) using (m.call(GoldenNet.Input())) { }
                return CallStack.Current.Count;
            })).ToArray();
            System.Threading.Tasks.Task.WaitAll(tasks);
            Assert.That(tasks.Select(t => t.Result), Is.All.EqualTo(0));
        }

        [Test]
        public void LongRunsDoNotGrowTheLiveTensorCount()
        {
            var m = new GoldenNet().WithHooks();
            using var pre = m.register_forward_pre_hook((mod, x) => x * 1);
            using var fwd = m["enc.0"].register_forward_hook((mod, x, y) => null, always_call: true);
            using var x = GoldenNet.Input();
            void Run(int n) { for (int i = 0; i < n; i++) using (var d = NewDisposeScope()) m.call(x); }
            Run(10);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            Run(200);
            long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            Assert.That(after - before, Is.LessThanOrEqualTo(0));
        }
    }
}
