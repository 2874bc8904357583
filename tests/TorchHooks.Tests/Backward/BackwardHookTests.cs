using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Backward
{
    /// <summary>
    /// Ports of the backward cases of PyTorch's test/nn/test_module_hooks.py (pytorch/pytorch; each test's
    /// Description names the upstream test it ports) and the call-path rules of full backward hooks. Not ported:
    /// the legacy <c>register_backward_hook</c> cases (TorchHooks offers only full hooks, so they cannot be mixed
    /// either), the BatchNorm1d case (covered by the gradient-shape rules tested here), dict outputs (a C# module's
    /// output type is static: a non-tensor output type gets the trace warning and no firing, tested below).
    /// </summary>
    [TestFixture]
    public class BackwardHookTests
    {
        [TearDown]
        public void NoGlobalHooksLeft()
        {
            Assert.That(ModuleHooks.BackwardPre.Count + ModuleHooks.Backward.Count, Is.Zero, "a test left a global backward hook registered");
            BackwardHooks.ThrowIfFailed();
        }

        private static Sequential Mlp() => BackwardGoldenTests.Mlp();

        [Test(Description = "upstream: TestModuleHooks.test_full_backward_hooks")]
        public void FullBackwardHooksOrderWithPrepend()
        {
            var lin = nn.Linear(5, 1, dtype: float64);
            var m = lin.WithHooks();
            var fired = new List<int>();
            var hs = new List<RemovableHandle>();
            for (int i = 0; i < 5; i++)
            {
                int id = i;
                hs.Add(m.register_full_backward_hook((mod, gi, go) =>
                {
                    Assert.That(mod, Is.SameAs(lin));
                    Assert.That(gi.Count, Is.EqualTo(1));
                    Assert.That(go.Count, Is.EqualTo(1));
                    fired.Add(id);
                    return null;
                }, prepend: id == 3 || id == 4));
            }
            using var x = ones(4, 5, dtype: float64, requires_grad: true);
            using var y = m.call(x);
            Assert.That(fired, Is.Empty, "nothing fires in forward");
            using var s = y.sum();
            s.Backward();
            Assert.That(fired, Is.EqualTo(new[] { 4, 3, 0, 1, 2 }));
            foreach (var h in hs) h.remove();
        }

        [Test(Description = "upstream: TestModuleHooks.test_full_backward_pre_hooks")]
        public void FullBackwardPreHooksOrderAndZeroing()
        {
            var lin = nn.Linear(5, 1, dtype: float64);
            var m = lin.WithHooks();
            var fired = new List<int>();
            var hs = new List<RemovableHandle>();
            for (int i = 0; i < 5; i++)
            {
                int id = i;
                hs.Add(m.register_full_backward_pre_hook((mod, go) => { fired.Add(id); return null; }, prepend: id == 1));
            }
            using (var x = ones(4, 5, dtype: float64, requires_grad: true))
            using (var y = m.call(x))
            using (var s = y.sum()) s.Backward();
            Assert.That(fired, Is.EqualTo(new[] { 1, 0, 2, 3, 4 }));
            foreach (var h in hs) h.remove();

            // returning (g*0,) zeroes the weight grad and the input grad
            using var z = m.register_full_backward_pre_hook((mod, go) => new[] { go[0]! * 0 });
            lin.zero_grad();
            using (var x = ones(4, 5, dtype: float64, requires_grad: true))
            {
                using (var y = m.call(x)) using (var s = y.sum()) s.Backward();
                Assert.That(TensorAssert.Values(lin.weight!.grad!), Is.All.EqualTo(0.0));
                Assert.That(TensorAssert.Values(x.grad!), Is.All.EqualTo(0.0));
            }
            // still fires when the input doesn't require grad; the input grad stays None
            int count = 0;
            using var c = m.register_full_backward_pre_hook((mod, go) => { count++; return null; });
            using (var x = ones(4, 5, dtype: float64))
            {
                using (var y = m.call(x)) using (var s = y.sum()) s.Backward();
                Assert.That(count, Is.EqualTo(1));
                Assert.That(x.grad, Is.Null);
            }
        }

        [Test(Description = "upstream: TestModuleHooks.test_mixed_hooks")]
        public void MixedHooks()
        {
            var m = nn.Linear(3, 3, dtype: float64).WithHooks();
            var events = new List<string>();
            using var scope = m.Hooks(() =>
            {
                m.register_forward_pre_hook((mod, x) => { events.Add("pre"); return null; });
                m.register_forward_hook((mod, x, y) => { events.Add("fwd"); return null; });
                m.register_full_backward_pre_hook((mod, go) => { events.Add("bw_pre"); return null; });
                m.register_full_backward_hook((mod, gi, go) => { events.Add("bw"); return null; });
            });
            for (int step = 1; step <= 2; step++)
            {
                using var x = ones(2, 3, dtype: float64, requires_grad: true);
                using var y = m.call(x);
                Assert.That(events.Count, Is.EqualTo(4 * step - 2));
                using var s = y.sum();
                s.Backward();
            }
            Assert.That(events, Is.EqualTo(new[] { "pre", "fwd", "bw_pre", "bw", "pre", "fwd", "bw_pre", "bw" }));
            Assert.That(scope.Handles.Count, Is.EqualTo(4), "backward hooks join scopes like forward hooks");
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_hooks (backward counts across retain_graph, several hooks, removal)")]
        public void GlobalBackwardHookCounts()
        {
            var m = nn.Sequential(nn.Linear(3, 3, dtype: float64), nn.Tanh()).WithHooks();
            int a = 0, b = 0;
            using var x = ones(2, 3, dtype: float64, requires_grad: true);
            using var y = m.call(x);
            using var s = y.sum();
            using (ModuleHooks.register_module_full_backward_hook((mod, gi, go) => { a++; return null; }))
            {
                // the hooks apply to calls that begin after registration
                using var y2 = m.call(x);
                using var s2 = y2.sum();
                s2.Backward(retain_graph: true);
                Assert.That(a, Is.EqualTo(3), "root, Linear and Tanh");
                s2.Backward(retain_graph: true);
                Assert.That(a, Is.EqualTo(6), "fires again on a second backward of the same graph");
                using (ModuleHooks.register_module_full_backward_hook((mod, gi, go) => { b++; return null; }))
                {
                    using var y3 = m.call(x);
                    using var s3 = y3.sum();
                    s3.Backward();
                    Assert.That((a, b), Is.EqualTo((9, 3)));
                }
            }
            using var y4 = m.call(x);
            using var s4 = y4.sum();
            s4.Backward();
            Assert.That((a, b), Is.EqualTo((9, 3)), "removed hooks don't fire");
            s.Backward();
            Assert.That((a, b), Is.EqualTo((9, 3)), "a graph built before registration has no hook nodes");
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_hook_invalid_outputs + TestModuleHookNN.test_hook_invalid_outputs")]
        public void WrongLengthReplacementsRaise()
        {
            var m = nn.Linear(3, 1, dtype: float64).WithHooks();
            using var x = ones(2, 3, dtype: float64, requires_grad: true);
            using (ModuleHooks.register_module_full_backward_hook((mod, gi, go) => new[] { gi[0], gi[0] }))
            {
                using var y = m.call(x);
                using var s = y.sum();
                var e = Assert.Throws<InvalidOperationException>(() => s.Backward());
                Assert.That(e!.Message, Does.Contain("Backward hook returned an invalid number of grad_input, got 2, but expected 1"));
            }
            using (m.register_full_backward_pre_hook((mod, go) => Array.Empty<Tensor>()))
            {
                using var y = m.call(x);
                using var s = y.sum();
                var e = Assert.Throws<InvalidOperationException>(() => s.Backward());
                Assert.That(e!.Message, Does.Contain("Backward pre hook returned an invalid number of grad_output, got 0, but expected 1"));
            }
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_backward_global_hook_writeable")]
        public void GlobalHookDoublesGradInput()
        {
            var lin = BackwardGoldenTests.Init(nn.Linear(3, 2, dtype: float64));
            var m = lin.WithHooks();
            using var x = BackwardGoldenTests.Data(0, 2, 3).requires_grad_();
            using (var y = m.call(x)) using (var s = (y * y).sum()) s.Backward();
            var plain = TensorAssert.Values(x.grad!);
            x.grad!.zero_();
            using (ModuleHooks.register_module_full_backward_hook((mod, gi, go) => new[] { gi[0]! * 2 }))
            using (var y = m.call(x)) using (var s = (y * y).sum()) s.Backward();
            Assert.That(TensorAssert.Values(x.grad!), Is.EqualTo(plain.Select(v => v * 2)).Within(1e-12));
        }

        [Test(Description = "upstream: TestModuleGlobalHooks.test_module_global_hooks_order (backward)")]
        public void GlobalBeforeLocal()
        {
            var m = nn.Linear(3, 1, dtype: float64).WithHooks();
            var events = new List<string>();
            using var l1 = m.register_full_backward_pre_hook((mod, go) => { events.Add("local_pre"); return null; }, prepend: true);
            using var l2 = m.register_full_backward_hook((mod, gi, go) => { events.Add("local"); return null; }, prepend: true);
            using var g1 = ModuleHooks.register_module_full_backward_pre_hook((mod, go) => { events.Add("global_pre"); return null; });
            using var g2 = ModuleHooks.register_module_full_backward_hook((mod, gi, go) => { events.Add("global"); return null; });
            using var x = ones(2, 3, dtype: float64, requires_grad: true);
            using var y = m.call(x);
            using var s = y.sum();
            s.Backward();
            Assert.That(events, Is.EqualTo(new[] { "global_pre", "local_pre", "global", "local" }));
            Assert.That(ModuleHooks.Handles.Select(h => h.id), Is.SupersetOf(new[] { g1.id, g2.id }), "global backward hooks are listed");
            Assert.That(m.Root.BackwardHookCount + m.Root.BackwardPreHookCount, Is.EqualTo(2));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hooks (invocation counts through repeated calls, retain_graph, second hooks and removal)")]
        public void InvocationCounts()
        {
            var m = nn.Sigmoid().WithHooks();
            int fw = 0, pre = 0;
            using var x = ones(5, 5, requires_grad: true);
            using var h1 = m.register_full_backward_hook((mod, gi, go) => { fw++; return null; });
            using var h2 = m.register_full_backward_pre_hook((mod, go) => { pre++; return null; });
            using (var y = m.call(x)) using (var s = y.sum()) { s.Backward(retain_graph: true); s.Backward(); }
            Assert.That((fw, pre), Is.EqualTo((2, 2)));
            using (var y = m.call(x)) using (var s = y.sum()) s.Backward();
            Assert.That((fw, pre), Is.EqualTo((3, 3)));
            h1.remove();
            using (var y = m.call(x)) using (var s = y.sum()) s.Backward();
            Assert.That((fw, pre), Is.EqualTo((3, 4)));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_backward_size")]
        public void GradSizes()
        {
            var m = new BackwardGoldenTests.Mul().WithHooks();
            using var h = m.register_full_backward_hook((mod, gi, go) =>
            {
                Assert.That(gi[0]!.shape, Is.EqualTo(new long[] { 5, 5 }));
                Assert.That(gi[1]!.shape, Is.EqualTo(new long[] { 5, 5 }));
                Assert.That(go[0]!.shape, Is.EqualTo(new long[] { 5, 5 }));
                return null;
            });
            using var a = ones(5, 5, requires_grad: true);
            using var b = ones(5, 5, requires_grad: true);
            using var y = m.call(a, b);
            using var s = y.sum();
            s.Backward();
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_no_requires_grad (returning a tensor raises)")]
        public void NoInputRequiresGradMustReturnNull()
        {
            var m = nn.Linear(3, 2).WithHooks();
            using var h = m.register_full_backward_hook((mod, gi, go) =>
            {
                Assert.That(gi, Has.Count.EqualTo(1).And.All.Null);
                return new[] { go[0] };
            });
            using var x = ones(2, 3);
            using var y = m.call(x);
            using var s = y.sum();
            var e = Assert.Throws<InvalidOperationException>(() => s.Backward());
            Assert.That(e!.Message, Does.Contain("no input requires gradient should always return None"));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_last_arg_requires_grad / test_hook_extra_input (a detached first argument, a non-tensor argument)")]
        public void DetachedAndNonTensorArguments()
        {
            var m = new BackwardGoldenTests.Mul().WithHooks();
            IReadOnlyList<Tensor?>? seen = null;
            using var h = m.register_full_backward_hook((mod, gi, go) => { seen = gi.Select(g => g?.detach().clone()).ToArray(); return null; });
            using var a = ones(2, 2);
            using var b = ones(2, 2, requires_grad: true);
            using (var y = m.call(a, b)) using (var s = y.sum()) s.Backward();
            Assert.That(seen, Has.Count.EqualTo(2));
            Assert.That(TensorAssert.Values(seen![0]!), Is.All.EqualTo(0.0), "an input that needs no grad: zeros, as in PyTorch");
            Assert.That(TensorAssert.Values(seen[1]!), Is.All.EqualTo(1.0));
            Assert.That(b.grad, Is.Not.Null);
            Assert.That(a.grad, Is.Null);
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_inplace (in-place use of wrapped outputs raises; the non-in-place case fires once)")]
        public void InplaceOnWrappedOutputRaises()
        {
            var m = nn.Linear(3, 3).WithHooks();
            int count = 0;
            using var h = m.register_full_backward_hook((mod, gi, go) => { count++; return null; });
            using var x = ones(2, 3, requires_grad: true);
            using (var y = m.call(x))
            {
                var e = Assert.Catch(() => y.add_(1));
                Assert.That(e!.Message, Does.Contain("is a view and is being modified inplace"));
            }
            using (var y = m.call(x)) using (var z = y + 1) using (var s = z.sum()) s.Backward();
            Assert.That(count, Is.EqualTo(1));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_backward_hooks_interaction (the full hook sees grad_output as modified by the pre-hook)")]
        public void FullHookSeesPreHookReplacement()
        {
            var m = nn.Linear(3, 1).WithHooks();
            double seen = 0;
            using var p = m.register_full_backward_pre_hook((mod, go) => new[] { go[0]! * 5 });
            using var h = m.register_full_backward_hook((mod, gi, go) => { seen = go[0]!.sum().item<float>(); return null; });
            using var x = ones(2, 3, requires_grad: true);
            using var y = m.call(x);
            using var s = y.sum();
            s.Backward();
            Assert.That(seen, Is.EqualTo(10.0));
        }

        [Test]
        public void ForwardHookReplacementIsWhatGetsTheBackwardHooks()
        {
            var m = nn.Linear(3, 2, dtype: float64).WithHooks();
            double seen = 0;
            using var f = m.register_forward_hook((mod, x, y) => y * 3);
            using var h = m.register_full_backward_pre_hook((mod, go) => { seen = go[0]!.sum().item<double>(); return null; });
            using var x = ones(2, 3, dtype: float64, requires_grad: true);
            using var y = m.call(x);
            using var s = (y * 2).sum();
            s.Backward();
            Assert.That(seen, Is.EqualTo(8.0), "grad_output is d(loss)/d(replaced output) = 2 for each of 4 elements");
        }

        [Test]
        public void SharedModuleCalledTwiceFiresTwiceIndependently()
        {
            var shared = nn.Linear(2, 2, dtype: float64);
            var model = nn.Sequential(shared, nn.Tanh(), shared).WithHooks();
            var gos = new List<double>();
            using var h = model["0"].register_full_backward_hook((mod, gi, go) => { gos.Add(go[0]!.abs().sum().item<double>()); return null; });
            using var x = ones(1, 2, dtype: float64, requires_grad: true);
            using var y = model.call(x);
            using var s = y.sum();
            s.Backward();
            Assert.That(gos, Has.Count.EqualTo(2));
            Assert.That(gos[0], Is.Not.EqualTo(gos[1]), "each call has its own grad_output");
        }

        [Test]
        public void NoFiringWithoutGradModeOrUnreachedOutput()
        {
            var m = nn.Linear(3, 2).WithHooks();
            int count = 0;
            using var h = m.register_full_backward_hook((mod, gi, go) => { count++; return null; });
            using var x = ones(2, 3, requires_grad: true);
            using (no_grad()) using (var y = m.call(x)) Assert.That(y.requires_grad, Is.False);
            using (var y = m.call(x)) using (var other = (x * 2).sum()) other.Backward();
            Assert.That(count, Is.Zero, "an output never reached by the gradient: no firing");
        }

        [Test]
        public void NothingInsertedWithoutBackwardHooks()
        {
            var lin = nn.Linear(3, 2);
            var m = lin.WithHooks();
            using var x = ones(2, 3, requires_grad: true);
            using var f = m.register_forward_hook((mod, xx, y) => { Assert.That(ReferenceEquals(xx, x), "inputs are not wrapped"); return null; });
            using var y = m.call(x);
            Assert.That(m.Root.BackwardHookCount, Is.Zero);
        }

        [Test(Description = "a throwing hook: the process survives, Backward() rethrows the original exception")]
        public void ThrowingHookIsDeliveredByBackward()
        {
            var m = Mlp().WithHooks();
            var boom = new InvalidOperationException("hook failed on purpose");
            int later = 0;
            using var h1 = m["2"].register_full_backward_hook((mod, gi, go) => throw boom);
            using var h2 = m["0"].register_full_backward_hook((mod, gi, go) => { later++; return null; });
            using var x = ones(2, 4, dtype: float64, requires_grad: true);
            using (var y = m.call(x)) using (var s = y.sum())
            {
                var e = Assert.Throws<InvalidOperationException>(() => s.Backward());
                Assert.That(e, Is.SameAs(boom), "the original exception object");
                Assert.That(e!.Data["TorchHooks.BackwardHook"], Does.Contain("module '2'"));
            }
            Assert.That(later, Is.Zero, "hooks after the failing one are skipped in that pass");
            Assert.That(x.grad, Is.Not.Null, "the gradients still flowed (unchanged)");

            // a plain backward(): delivered by the next forward of a module with backward hooks
            using (var y = m.call(x)) using (var s = y.sum()) s.backward();
            var next = Assert.Throws<BackwardHookException>(() => m.call(x));
            Assert.That(next!.InnerException, Is.SameAs(boom));
            h1.remove();
            using (var y = m.call(x)) using (var s = y.sum()) s.Backward();
            Assert.That(later, Is.EqualTo(1), "hooks run again once the failure was delivered");
        }

        [Test(Description = "DisposeScope around forward with an unused output: no abort, None for the unused grad")]
        public void DisposeScopeAroundForwardWithUnusedOutput()
        {
            var m = new Split().WithHooks();
            IReadOnlyList<bool>? isNull = null;
            using var h = m.register_full_backward_hook((mod, gi, go) => { isNull = go.Select(g => g is null).ToArray(); return null; });
            using var x = ones(3, requires_grad: true);
            Tensor loss;
            using (var d = NewDisposeScope())
            {
                var (a, _) = m.call(x);
                loss = (a * a).sum().MoveToOuterDisposeScope();
            }
            loss.Backward();
            loss.Dispose();
            Assert.That(isNull, Is.EqualTo(new[] { false, true }));
            Assert.That(TensorAssert.Values(x.grad!), Is.EqualTo(new[] { 8.0, 8.0, 8.0 }));
        }

        [Test(Description = "backward through a bf16 autocast region")]
        public void BackwardThroughBf16Autocast()
        {
            var lin = nn.Linear(4, 3);
            var m = lin.WithHooks();
            ScalarType? seenDtype = null;
            using var h = m.register_full_backward_hook((mod, gi, go) => { seenDtype = go[0]!.dtype; return null; });
            using var x = ones(2, 4, requires_grad: true);
            Tensor y;
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) y = m.call(x);
            Assert.That(y.dtype, Is.EqualTo(ScalarType.BFloat16));
            using (y) using (var s = y.@float().sum()) s.Backward();
            Assert.That(seenDtype, Is.EqualTo(ScalarType.BFloat16), "grad_output has the output's dtype");
            Assert.That(lin.weight!.grad!.dtype, Is.EqualTo(ScalarType.Float32));
            Assert.That(x.grad, Is.Not.Null);
        }

        [Test(Description = "1,000 training steps with hooks on every module: exact counts, flat live-tensor count")]
        public void ThousandStepsExactCountsFlatLiveTensors()
        {
            var model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1));
            var m = model.WithHooks();
            var opt = optim.SGD(model.parameters(), 0.01);
            int full = 0, pre = 0;
            using var scope = m.Hooks(() =>
            {
                foreach (var p in m.HookPoints())
                {
                    p.register_full_backward_hook((mod, gi, go) => { full++; return null; });
                    p.register_full_backward_pre_hook((mod, go) => { pre++; return null; });
                }
            });
            using var x = rand(16, 4);
            using var t = rand(16, 1);
            void Step()
            {
                using var d = NewDisposeScope();
                opt.zero_grad();
                var loss = nn.functional.mse_loss(m.call(x), t);
                loss.Backward();
                opt.step();
            }
            for (int i = 0; i < 10; i++) Step();
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 1000; i++) Step();
            long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            Assert.That((full, pre), Is.EqualTo((4 * 1010, 4 * 1010)), "root + 3 layers, once per step each");
            Assert.That(after - before, Is.LessThanOrEqualTo(0));
        }

        [Test(Description = "Tensor.register_hook counterpart: WithGradHook")]
        public void TensorGradHook()
        {
            using var x = ones(3, dtype: float64, requires_grad: true);
            var seen = new List<double>();
            using (var h = x.WithGradHook(g => { seen.Add(g.sum().item<double>()); return g * 10; }))
            using (var s = (h * 2).sum())
                s.Backward();
            Assert.That(seen, Is.EqualTo(new[] { 6.0 }));
            Assert.That(TensorAssert.Values(x.grad!), Is.EqualTo(new[] { 20.0, 20.0, 20.0 }));
            using var noGrad = ones(2);
            Assert.Throws<ArgumentException>(() => noGrad.WithGradHook(g => null));
        }

        [Test]
        public void GradHookFromForwardHookReplacesModuleOutput()
        {
            var m = nn.Linear(3, 2, dtype: float64).WithHooks();
            double seen = 0;
            using var f = m.register_forward_hook((mod, x, y) => y.WithGradHook(g => { seen = g.sum().item<double>(); return null; }));
            using var x = ones(2, 3, dtype: float64, requires_grad: true);
            using var y = m.call(x);
            using var s = (y * 3).sum();
            s.Backward();
            Assert.That(seen, Is.EqualTo(12.0));
        }

        [Test]
        public void BadArgumentsNameTheFix()
        {
            var m = nn.Linear(3, 2).WithHooks();
            var e = Assert.Throws<ArgumentNullException>(() => m.Root.register_full_backward_hook(null!));
            Assert.That(e!.ParamName, Is.EqualTo("hook"));
            Assert.That(m.Root.BackwardHookCount, Is.Zero, "nothing half-registered");
        }
    }
}
