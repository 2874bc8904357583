using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Hooks
{
    /// <summary>
    /// Ports of the forward-side cases of PyTorch's test/nn/test_module_hooks.py (pytorch/pytorch; each test's
    /// Description names the upstream test it ports). Golden values come from
    /// Goldens/hooks/make_goldens.py (PyTorch 1.13.1); prepend/always_call are newer than 1.13, so those
    /// cases assert the upstream test's own expectations.
    ///
    /// Not ported, with reasons:
    /// - with_kwargs (test_kwarg_hooks, test_remove_kwarg_hooks, test_module_global_forward_hooks_with_kwargs): TorchSharp's forward has positional parameters only, there are no
    ///   kwargs to pass or rewrite. The intent — a pre-hook rewriting one of several inputs, a forward hook
    ///   seeing the rewritten inputs and replacing the output, removal reverting it — is ported on a
    ///   three-input module instead (KwargHooksAdapted, RemoveKwargHooksAdapted, GlobalHookOnMultiInputModule).
    /// - The backward halves of test_forward_hooks and the global-hook tests (in Backward/BackwardHookTests.cs).
    /// </summary>
    [TestFixture]
    public class ForwardHookConformanceTests
    {
        [TearDown]
        public void NoGlobalHooksLeft()
        {
            Assert.That(ModuleHooks.ForwardPre.Count + ModuleHooks.Forward.Count, Is.Zero, "a test left a global hook registered");
        }

        private static HookedModule<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor> m) => m.WithHooks();

        [Test(Description = "upstream: TestModuleHooks.test_forward_hooks")]
        public void ForwardHooksOrderWithPrepend()
        {
            var lin = nn.Linear(3, 2);
            var m = Wrap(lin);
            var fired = new List<int>();
            var handles = new List<RemovableHandle>();
            for (int i = 0; i < 5; i++)
            {
                int id = i;
                bool prepend = id == 1 || id == 4;
                handles.Add(m.register_forward_hook((mod, x, y) =>
                {
                    Assert.That(mod, Is.SameAs(lin), "the hook gets the module that ran");
                    fired.Add(id);
                    return null;
                }, prepend: prepend));
            }
            using var x = ones(4, 3, requires_grad: true);
            using (var y = m.call(x)) Assert.That(fired, Is.EqualTo(new[] { 4, 1, 0, 2, 3 }));
            fired.Clear();
            using (var y = m.call(x))
            {
                Assert.That(fired, Is.EqualTo(new[] { 4, 1, 0, 2, 3 }), "hooks fire again on every call");
                fired.Clear();
                using var s = y.sum();
                s.backward();
                Assert.That(fired, Is.Empty, "forward hooks do not fire in backward");
            }
            foreach (var h in handles) h.remove();
        }

        [Test(Description = "upstream: TestModuleHooks.test_forward_hooks (tuple outputs keep their type)")]
        public void ForwardHookOnTupleOutputKeepsType()
        {
            var m = new Split().WithHooks();
            int calls = 0;
            using var h = m.register_forward_hook((mod, x, y) => { calls++; return null; });
            using var x = ones(2);
            var (a, b) = m.call(x);
            Assert.That(calls, Is.EqualTo(1));
            Assert.That(TensorAssert.Values(a), Is.EqualTo(new[] { 2.0, 2.0 }));
            Assert.That(TensorAssert.Values(b), Is.EqualTo(new[] { 3.0, 3.0 }));
            using var r = m.register_forward_hook((mod, x, y) => (y.Item2, y.Item1));
            var (c, d) = m.call(x);
            Assert.That(TensorAssert.Values(c), Is.EqualTo(new[] { 3.0, 3.0 }), "a value-type (tuple) output can be replaced");
            Assert.That(TensorAssert.Values(d), Is.EqualTo(new[] { 2.0, 2.0 }));
        }

        [Test(Description = "upstream: TestModuleHooks.test_forward_pre_hooks")]
        public void ForwardPreHooksOrderWithPrepend()
        {
            var m = Wrap(nn.Linear(3, 2));
            var fired = new List<int>();
            var handles = new List<RemovableHandle>();
            for (int i = 0; i < 5; i++)
            {
                int id = i;
                handles.Add(m.register_forward_pre_hook((mod, x) => { fired.Add(id); return null; }, prepend: id == 0 || id == 4));
            }
            using var x = ones(4, 3);
            using (m.call(x)) { }
            Assert.That(fired, Is.EqualTo(new[] { 4, 0, 1, 2, 3 }));
            foreach (var h in handles) h.remove();
        }

        [Test(Description = "upstream: TestModuleHooks.test_kwarg_hooks (adapted: positional inputs, no kwargs in TorchSharp)")]
        public void KwargHooksAdapted()
        {
            var add3 = new Add3();
            var tree = new AllArities().WithHooks();
            var point = tree["add3"];
            Tensor? seenB = null;
            using var pre = point.register_forward_pre_hook<Tensor, Tensor, Tensor>((m, a, b, c) => (a, b * 0 + 7, c));
            using var fwd = point.register_forward_hook<Tensor, Tensor, Tensor, Tensor>((m, a, b, c, y) => { seenB = b.alias(); return y + 1000; });
            using var x = ones(1);
            using var direct = ((AllArities)tree.Module).add3.call(ones(1), ones(1), ones(1));
            // a + 7*10 + c*100 + 1000 = 1 + 70 + 100 + 1000
            Assert.That(TensorAssert.Values(direct), Is.EqualTo(new[] { 1171.0 }));
            Assert.That(TensorAssert.Values(seenB!), Is.EqualTo(new[] { 7.0 }), "the forward hook sees the inputs after pre-hooks");
            seenB!.Dispose();
        }

        [Test(Description = "upstream: TestModuleHooks.test_remove_kwarg_hooks (adapted)")]
        public void RemoveKwargHooksAdapted()
        {
            var tree = new AllArities().WithHooks();
            var point = tree["add3"];
            var pre = point.register_forward_pre_hook<Tensor, Tensor, Tensor>((m, a, b, c) => (a, b * 0 + 7, c));
            var fwd = point.register_forward_hook<Tensor, Tensor, Tensor, Tensor>((m, a, b, c, y) => y + 1000);
            var add3 = ((AllArities)tree.Module).add3;
            using (var y = add3.call(ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 1171.0 }));
            pre.remove(); fwd.remove();
            Assert.That(point.ForwardPreHookCount + point.ForwardHookCount, Is.Zero, "remove() clears the tables");
            using (var y = add3.call(ones(1), ones(1), ones(1))) Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 111.0 }), "behaviour reverts");
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks")]
        public void AlwaysCalledForwardHooks()
        {
            var failing = new Failing();
            var m = failing.WithHooks();
            int always = 0, normal = 0;
            using var h1 = m.register_forward_hook((mod, x, y) => { always++; Assert.That(y, Is.Null); return null; }, always_call: true);
            using var h2 = m.register_forward_hook((mod, x, y) => { normal++; return null; });
            using var x = ones(1);
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x));
            Assert.That(e!.Message, Is.EqualTo("forward failed on purpose"));
            Assert.That((always, normal), Is.EqualTo((1, 0)), "forward raised: only the always_call hook runs");
            Assert.That(CallStack.Current.Count, Is.Zero, "nothing is left on the call stack");
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks (exactly once on success)")]
        public void AlwaysCalledHookRunsOnceOnSuccess()
        {
            var m = Wrap(nn.Identity());
            int always = 0;
            using var h = m.register_forward_hook((mod, x, y) => { always++; return null; }, always_call: true);
            using var x = ones(1);
            using (m.call(x)) { }
            Assert.That(always, Is.EqualTo(1));
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks (runs when a pre-hook raises)")]
        public void AlwaysCalledHookRunsWhenPreHookThrows()
        {
            var m = Wrap(nn.Identity());
            int always = 0;
            var boom = new ArgumentException("pre-hook failed");
            using var p = m.register_forward_pre_hook((mod, x) => throw boom);
            using var h = m.register_forward_hook((mod, x, y) => { always++; return null; }, always_call: true);
            using var x = ones(1);
            var e = Assert.Throws<ArgumentException>(() => m.call(x));
            Assert.That(e, Is.SameAs(boom), "the original exception object propagates");
            Assert.That(always, Is.EqualTo(1));
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks (prepended always-call hook raising does not hide the original error; not re-run)")]
        public void FailingAlwaysCallHookDoesNotHideOriginalAndIsNotRerun()
        {
            var m = new Failing().WithHooks();
            int failingRuns = 0, laterRuns = 0;
            using var later = m.register_forward_hook((mod, x, y) => { laterRuns++; return null; }, always_call: true);
            using var first = m.register_forward_hook((mod, x, y) => { failingRuns++; throw new FormatException("always hook failed"); }, prepend: true, always_call: true);
            using var x = ones(1);
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x));
            Assert.That(e!.Message, Is.EqualTo("forward failed on purpose"));
            Assert.That((failingRuns, laterRuns), Is.EqualTo((1, 1)));
            var suppressed = (Exception[])e.Data[FailureReport.DataKey]!;
            Assert.That(suppressed.Select(s => s.Message), Is.EqualTo(new[] { "always hook failed" }), "the hook's own exception is reported, not thrown");
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks (a forward hook raising: remaining always-call hooks run, the raising one is not re-run)")]
        public void ForwardHookThrowingRunsRemainingAlwaysCallHooks()
        {
            var m = Wrap(nn.Identity());
            var order = new List<string>();
            using var a = m.register_forward_hook((mod, x, y) => { order.Add("a"); throw new FormatException("a failed"); }, always_call: true);
            using var b = m.register_forward_hook((mod, x, y) => { order.Add("b"); return null; });
            using var c = m.register_forward_hook((mod, x, y) => { order.Add("c"); return null; }, always_call: true);
            using var x = ones(1);
            var e = Assert.Throws<FormatException>(() => m.call(x));
            Assert.That(e!.Message, Is.EqualTo("a failed"));
            Assert.That(order, Is.EqualTo(new[] { "a", "c" }));
        }

        [Test(Description = "upstream: TestModuleHooks.test_always_called_forward_hooks (global always-call hooks; removal clears the tables)")]
        public void GlobalAlwaysCallHooks()
        {
            var m = new Failing().WithHooks();
            int global = 0;
            var h = ModuleHooks.register_module_forward_hook((mod, x, y) => { global++; return null; }, always_call: true);
            try
            {
                using var x = ones(1);
                Assert.Throws<InvalidOperationException>(() => m.call(x));
                Assert.That(global, Is.EqualTo(1));
            }
            finally { h.remove(); }
            Assert.That(ModuleHooks.Forward.Count, Is.Zero);
            Assert.That(ModuleHooks.ForwardPre.Count, Is.Zero);
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_hooks (forward side: fires for every module instance)")]
        public void GlobalForwardHookFiresForEveryModule()
        {
            var a = nn.Linear(2, 2).WithHooks();
            var b = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).WithHooks();
            var seen = new List<nn.Module>();
            using (ModuleHooks.register_module_forward_hook((mod, x, y) => { seen.Add(mod); return null; }))
            {
                using var x = ones(1, 2);
                using (a.call(x)) { }
                using (b.call(x)) { }
            }
            Assert.That(seen.Count, Is.EqualTo(1 + 3), "the Linear, then the Sequential's two children and the Sequential");
            Assert.That(seen[0], Is.SameAs(a.Module));
            Assert.That(seen[3], Is.SameAs(b.Module), "the container finishes last");
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_hook_invalid_outputs / test_module_forward_preforward_hook_removable (handle as a scope)")]
        public void HandleWorksAsScope()
        {
            var m = Wrap(nn.Identity());
            int n = 0;
            using var x = ones(1);
            using (ModuleHooks.register_module_forward_pre_hook((mod, t) => { n++; return null; }))
                using (m.call(x)) { }
            using (m.call(x)) { }
            Assert.That(n, Is.EqualTo(1));
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_forward_forward_hook_removable — gradients agree (golden from PyTorch 1.13)")]
        public void GlobalAndLocalReplacementsMatchPyTorch()
        {
            var golden = Goldens.Load("hooks", "hooks.json").GetProperty("replaced");
            var net = new GoldenNet();
            var m = net.WithHooks();
            var shared = net.shared;
            using var pre = m.register_forward_pre_hook((mod, x) => x * 2);
            using var neg = m["dec.0"].register_forward_hook((mod, x, y) => -y);
            using var glob = ModuleHooks.register_module_forward_hook((mod, x, y) => ReferenceEquals(mod, shared) ? y + 1 : null);
            using var input = GoldenNet.Input().requires_grad_(true);
            using var y = m.call(input);
            using (var s = y.sum()) s.backward();
            TensorAssert.Close(y, golden.GetProperty("output").Doubles(), what: "output");
            TensorAssert.Close(input.grad!, golden.GetProperty("input_grad").Doubles(), what: "input grad");
            foreach (var (name, p) in net.named_parameters())
                TensorAssert.Close(p.grad!, golden.GetProperty("param_grads").GetProperty(name).Doubles(), what: name);
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_forward_preforward_hook_removable (golden from PyTorch 1.13)")]
        public void PreHooksRemovingThemselvesMidCall()
        {
            var golden = Goldens.Load("hooks", "hooks.json").GetProperty("self_removing");
            var m = new GoldenNet().WithHooks();
            var events = new List<string>();
            var handles = new RemovableHandle[3];
            for (int i = 0; i < 3; i++)
            {
                int id = i;
                handles[i] = m.register_forward_pre_hook((mod, x) =>
                {
                    events.Add(id.ToString());
                    if (id == 1) { handles[0].remove(); handles[1].remove(); }
                    return null;
                });
            }
            using var input = GoldenNet.Input();
            using var y1 = m.call(input);
            events.Add("|");
            using var y2 = m.call(input);
            handles[2].remove();
            var expected = golden.GetProperty("events").EnumerateArray().Select(e => e.ValueKind == System.Text.Json.JsonValueKind.Number ? e.GetInt32().ToString() : e.GetString()!).ToArray();
            Assert.That(events, Is.EqualTo(expected));
            Assert.That(TensorAssert.Values(y1).SequenceEqual(TensorAssert.Values(y2)), Is.EqualTo(golden.GetProperty("same_output").GetBoolean()));
            Assert.That(m.Root.ForwardPreHookCount, Is.EqualTo(golden.GetProperty("remaining").GetInt32()));
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_forward_forward_hook_removable")]
        public void ForwardHooksRemovingThemselvesMidCall()
        {
            var m = new GoldenNet().WithHooks();
            var events = new List<int>();
            var handles = new RemovableHandle[3];
            for (int i = 0; i < 3; i++)
            {
                int id = i;
                handles[i] = m.register_forward_hook((mod, x, y) =>
                {
                    events.Add(id);
                    if (id == 1) { handles[0].remove(); handles[1].remove(); }
                    return null;
                });
            }
            using var input = GoldenNet.Input();
            using var y1 = m.call(input);
            using var y2 = m.call(input);
            Assert.That(events, Is.EqualTo(new[] { 0, 1, 2, 2 }));
            Assert.That(TensorAssert.Values(y2), Is.EqualTo(TensorAssert.Values(y1)), "the output is right after hooks removed themselves");
            handles[2].remove();
            Assert.That(m.Root.ForwardHookCount, Is.Zero, "the table ends empty");
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_global_and_local_hooks_order (golden from PyTorch 1.13: the whole tree)")]
        public void GlobalHooksRunBeforeLocalOnesThroughTheTree()
        {
            var expected = Goldens.Load("hooks", "hooks.json").GetProperty("tree_order").Strings();
            var m = new GoldenNet().WithHooks();
            var events = new List<string>();
            var scope = new HookScope();
            scope.Add(ModuleHooks.register_module_forward_pre_hook((mod, x) => { events.Add("gpre:" + Path(m, mod)); return null; }));
            scope.Add(ModuleHooks.register_module_forward_hook((mod, x, y) => { events.Add("gfwd:" + Path(m, mod)); return null; }));
            foreach (var path in m.Paths)
            {
                var p = path;
                scope.Add(m[p].register_forward_pre_hook((mod, x) => { events.Add("pre:" + p); return null; }));
                scope.Add(m[p].register_forward_hook((mod, x, y) => { events.Add("fwd:" + p); return null; }));
            }
            using (scope)
            {
                using var input = GoldenNet.Input();
                using var y = m.call(input);
            }
            Assert.That(events, Is.EqualTo(expected));
        }

        private static string Path(IHookedModule m, nn.Module module) => m.Paths.First(p => ReferenceEquals(m[p].Module, module));

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_forward_preforward_hook_writeable")]
        public void GlobalPreHookReplacesInput()
        {
            var m = Wrap(nn.Identity());
            using var h = ModuleHooks.register_module_forward_pre_hook((mod, x) => x * 3);
            using var x = ones(2);
            using var y = m.call(x);
            Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { 3.0, 3.0 }));
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_forward_hooks_with_kwargs (adapted: a global hook on a multi-input module)")]
        public void GlobalHookOnMultiInputModule()
        {
            var tree = new AllArities().WithHooks();
            var add2 = ((AllArities)tree.Module).add2;
            (Tensor, Tensor)? seen = null;
            using var h = ModuleHooks.register_module_forward_hook<(Tensor, Tensor), Tensor>((mod, args, y) =>
            {
                seen = args;
                return -y;
            });
            using var y = add2.call(ones(1), ones(1) * 2);
            Assert.That(TensorAssert.Values(y), Is.EqualTo(new[] { -3.0 }));
            Assert.That(TensorAssert.Values(seen!.Value.Item2), Is.EqualTo(new[] { 2.0 }));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_forward_preforward_writable")]
        public void LocalPreHookReplacesInputForwardHookNegatesOutput()
        {
            var lin = nn.Linear(3, 2);
            var m = Wrap(lin);
            using var x = randn(4, 3);
            using var expected = -lin.forward(x * 2);
            using var pre = m.register_forward_pre_hook((mod, t) => t * 2);
            using var fwd = m.register_forward_hook((mod, t, y) => -y);
            using var y = m.call(x);
            Assert.That(y.allclose(expected), Is.True);
        }
    }
}
