using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Hooks
{
    /// <summary>The API pass: temporary hooks of any signature, typed hook points, selecting hook points, global handles, messages.</summary>
    [TestFixture]
    public class ApiTests
    {
        [TearDown]
        public void NoGlobalHookLeft() => Assert.That(ModuleHooks.Handles, Is.Empty, "a test left a global hook registered");

        [Test(Description = "Hooks(() => ...) scopes every registration made inside, of any signature, and removes only those")]
        public void ScopeCollectsRegistrationsOfAnySignature()
        {
            var net = new AllArities();
            var m = net.WithHooks();
            var fired = new List<string>();
            using var own = m["add2"].register_forward_hook<Tensor, Tensor, Tensor>((mod, a, b, y) => { fired.Add("own"); return null; });
            using (var scope = m.Hooks(() =>
            {
                m.At(net.add3).register_forward_hook((mod, a, b, c, y) => { fired.Add("add3"); return null; });
                m.At(net.split).register_forward_hook((mod, x, y) => { fired.Add("split"); return null; });
                ModuleHooks.register_module_forward_hook((mod, x, y) => { fired.Add("global"); return null; });
            }))
            {
                Assert.That(scope.Handles, Has.Count.EqualTo(3));
                using var x = ones(2);
                using (m.call(x)) { }
            }
            Assert.That(fired, Is.EqualTo(new[] { "split", "own", "add3", "global" }));
            fired.Clear();
            using (var x = ones(2)) using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(new[] { "own" }), "the scope removed its hooks, not the one registered outside");
        }

        [Test(Description = "A scope whose registrations throw leaves nothing registered")]
        public void ScopeIsAllOrNone()
        {
            var m = new GoldenNet().WithHooks();
            Assert.Throws<KeyNotFoundException>(() => m.Hooks(() =>
            {
                m["enc.0"].register_forward_hook((mod, x, y) => null);
                m["enc.9"].register_forward_hook((mod, x, y) => null);
            }));
            Assert.That(m["enc.0"].ForwardHookCount, Is.Zero);
        }

        [Test(Description = "At(module) gives a hook point whose lambdas infer the module's types; a foreign module is rejected")]
        public void TypedHookPointInfersTypes()
        {
            var net = new AllArities();
            var m = net.WithHooks();
            using var h = m.At(net.add2).register_forward_pre_hook((mod, a, b) => (a * 0, b));
            using var one = ones(1);
            using var direct = net.add2.call(one, one);
            Assert.That(direct.item<float>(), Is.EqualTo(1f), "the pre-hook replaced the first input");
            Assert.That(m.At(net.add2).HookPoint, Is.SameAs(m["add2"]));
            var e = Assert.Throws<ArgumentException>(() => m.At(new Add2()))!;
            Assert.That(e.ParamName, Is.EqualTo("module"));
        }

        [Test(Description = "HookPoints() lists every hookable module (no ModuleList), by type or predicate")]
        public void HookPointsSelectByTypeAndPredicate()
        {
            var m = new ListNet().WithHooks();
            Assert.That(m.Paths, Does.Contain("layers"));
            Assert.That(m.HookPoints().Select(p => p.Path), Is.EqualTo(new[] { "", "layers.0", "layers.1", "layers.2" }));
            Assert.That(m.HookPoints<Linear>().Select(p => p.Path), Is.EqualTo(new[] { "layers.0", "layers.2" }));
            Assert.That(m.HookPoints(p => p.Path.EndsWith("1")).Select(p => p.Path), Is.EqualTo(new[] { "layers.1" }));
            int fired = 0;
            using (m.Hooks(() => { foreach (var p in m.HookPoints()) p.register_forward_hook((mod, x, y) => { fired++; return null; }); }))
            using (var x = ones(1, 2)) using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(4));
        }

        [Test(Description = "Global hooks can be listed and all removed (a lost handle no longer leaks)")]
        public void GlobalHooksCanBeListedAndRemoved()
        {
            ModuleHooks.register_module_forward_pre_hook((mod, x) => null);
            ModuleHooks.register_module_forward_hook((mod, x, y) => null);
            Assert.That(ModuleHooks.Handles, Has.Count.EqualTo(2));
            Assert.That(ModuleHooks.RemoveAll(), Is.EqualTo(2));
            Assert.That(ModuleHooks.Handles, Is.Empty);
        }

        [Test(Description = "A hook of the wrong signature: the message spells types as C# does")]
        public void MismatchMessageUsesCSharpTypeNames()
        {
            var m = new AllArities().WithHooks();
            var e = Assert.Throws<ArgumentException>(() => m["add2"].register_forward_pre_hook<Tensor, Tensor, Tensor>((mod, a, b, c) => null))!;
            Assert.That(e.Message, Does.Contain("(Tensor, Tensor, Tensor)").And.Not.Contain("ValueTuple"));
        }

        [Test(Description = "ModuleCallInfo.Current outside a hooked call throws with the fix; CurrentOrNull is null")]
        public void CurrentOutsideACall()
        {
            Assert.That(ModuleCallInfo.CurrentOrNull, Is.Null);
            var e = Assert.Throws<InvalidOperationException>(() => _ = ModuleCallInfo.Current)!;
            Assert.That(e.Message, Does.Contain("CurrentOrNull"));
        }

        private sealed class ListNet : nn.Module<Tensor, Tensor>
        {
            private readonly ModuleList<nn.Module<Tensor, Tensor>> layers = new(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2));
            public ListNet() : base("ListNet") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                foreach (var l in layers) x = l.call(x);
                return x;
            }
        }
    }
}
