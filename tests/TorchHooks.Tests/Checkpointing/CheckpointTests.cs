using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TorchHooks.Tests.Backward;
using static TorchHooks.Tests.Checkpointing.CheckpointModels;

namespace TorchHooks.Tests.Checkpointing
{
    /// <summary>
    /// Activation checkpointing on the call path: PyTorch's semantics (RNG and autocast state in the recompute,
    /// no_grad, nesting), hooks and observers during the recompute, bad input, and that nothing is paid when nothing
    /// is checkpointed. Upstream tests ported are named in each Description (pytorch/pytorch test/test_utils.py,
    /// TestCheckpoint; test/distributed/_composable/test_checkpoint.py).
    /// </summary>
    [TestFixture]
    public class CheckpointTests
    {
        [TearDown]
        public void NothingLeft() => BackwardHooks.ThrowIfFailed();

        private sealed class DropBlock : nn.Module<Tensor, Tensor>
        {
            public readonly Linear fc = nn.Linear(16, 16);
            public readonly Dropout drop = nn.Dropout(0.5);
            public DropBlock() : base("DropBlock") { RegisterComponents(); }
            public override Tensor forward(Tensor x) => x + drop.call(fc.call(x).relu());
        }

        private static (double[] XGrad, Dictionary<string, double[]?> Params, double After) DropoutStep(bool checkpointed)
        {
            manual_seed(7);
            var model = nn.Sequential(("b0", new DropBlock()), ("b1", new DropBlock()), ("head", nn.Linear(16, 1)));
            var m = model.WithHooks();
            using var policy = checkpointed ? m.Checkpoint(new CheckpointOptions { Paths = new[] { "b*" } }) : null;
            using var x = randn(8, 16).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            loss.Backward();
            using var next = rand(1);   // the caller's RNG stream goes on as without checkpointing (fork_rng)
            return (TensorAssert.Values(x.grad!), ParamGrads(model), next.item<float>());
        }

        [Test(Description = "upstream: test_utils.TestCheckpoint.test_checkpoint_rng_cpu (dropout: the recompute draws the same mask; preserve_rng_state)")]
        public void DropoutMasksAreTheSameInTheRecompute()
        {
            var plain = DropoutStep(false);
            var ck = DropoutStep(true);
            Assert.That(ck.XGrad, Is.EqualTo(plain.XGrad));
            foreach (var (k, v) in plain.Params) Assert.That(ck.Params[k], Is.EqualTo(v), k);
            Assert.That(ck.After, Is.EqualTo(plain.After), "the RNG state after backward is the caller's, as without checkpointing");
        }

        [Test(Description = "preserve_rng_state = false: the recompute draws a new mask (PyTorch's documented consequence), so gradients differ")]
        public void WithoutPreservedRngTheMaskDiffers()
        {
            manual_seed(7);
            var model = new DropBlock();
            var m = model.WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Filter = p => p.Path == "", preserve_rng_state = false });
            using var x = randn(64, 16).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            loss.Backward();
            var ck = TensorAssert.Values(model.fc.weight.grad!);
            manual_seed(7);
            var model2 = new DropBlock();
            using var x2 = randn(64, 16).requires_grad_();
            using var y2 = model2.call(x2);
            using var loss2 = y2.sum();
            loss2.backward();
            Assert.That(ck, Is.Not.EqualTo(TensorAssert.Values(model2.fc.weight.grad!)));
        }

        private static (double[] XGrad, Dictionary<string, double[]?> Params, ScalarType Dtype) AutocastStep(bool checkpointed)
        {
            var model = BackwardGoldenTests.Init(new ResMlp(2, 8, 16, dtype: ScalarType.Float32));
            var m = model.WithHooks();
            using var policy = checkpointed ? m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*" } }) : null;
            using var x = BackwardGoldenTests.Data(0, 4, 8).to(ScalarType.Float32).requires_grad_();
            Tensor y;
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
                y = m.call(x);
            using var loss = y.to(ScalarType.Float32).sum();
            loss.Backward();   // outside the autocast region: the recompute restores the forward's
            var r = (TensorAssert.Values(x.grad!), ParamGrads(model), y.dtype);
            y.Dispose();
            return r;
        }

        [Test(Description = "upstream: test_utils.TestCheckpoint autocast cases (the forward's autocast state is restored for the recompute)")]
        public void AutocastStateIsRestoredForTheRecompute()
        {
            var plain = AutocastStep(false);
            var ck = AutocastStep(true);
            Assert.That(ck.Dtype, Is.EqualTo(ScalarType.BFloat16));
            Assert.That(ck.XGrad, Is.EqualTo(plain.XGrad));
            foreach (var (k, v) in plain.Params) Assert.That(ck.Params[k], Is.EqualTo(v), k);
        }

        [Test(Description = "checkpointing inside no_grad does nothing: one forward, no node, no recompute")]
        public void NoGradDoesNothing()
        {
            var m = Mlp().WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*" } });
            int calls = 0;
            using var h = m["blocks.1.fc1"].register_forward_hook((mod, x, y) => { calls++; Assert.That(ModuleCallInfo.Current.IsRecomputation, Is.False); return null; });
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            using (no_grad())
            {
                using var y = m.call(x);
                Assert.That(y.requires_grad, Is.False);
            }
            Assert.That(calls, Is.EqualTo(1));
            Assert.That(is_grad_enabled(), Is.True);
        }

        [Test(Description = "upstream: test_checkpoint.py (composable) test_checkpoint_module_hooks: which hooks run again. Forward pre-hooks and forward hooks of the checkpointed module and of the modules inside it fire again in the recompute (as with checkpoint_wrapper), with ModuleCallInfo.IsRecomputation; full backward hooks fire once per call")]
        public void HooksInTheRecompute()
        {
            var m = Mlp().WithHooks();
            var log = new List<string>();
            using var scope = m.Hooks(() =>
            {
                foreach (var path in new[] { "blocks.1", "blocks.1.fc1", "head" })
                {
                    m[path].register_forward_pre_hook((mod, x) => { log.Add($"pre {path}{(ModuleCallInfo.Current.IsRecomputation ? " (re)" : "")}"); return null; });
                    m[path].register_forward_hook((mod, x, y) => { log.Add($"fwd {path}{(ModuleCallInfo.Current.IsRecomputation ? " (re)" : "")}"); return null; });
                    m[path].register_full_backward_hook((mod, gi, go) => { log.Add($"bwd {path}"); return null; });
                }
            });
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" } });
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            log.Add("backward");
            loss.Backward();
            Assert.That(log, Is.EqualTo(new[]
            {
                "pre blocks.1", "pre blocks.1.fc1", "fwd blocks.1.fc1", "fwd blocks.1", "pre head", "fwd head",
                "backward",
                "bwd head",
                "pre blocks.1 (re)", "pre blocks.1.fc1 (re)", "fwd blocks.1.fc1 (re)", "fwd blocks.1 (re)",
                "bwd blocks.1.fc1", "bwd blocks.1",
            }));
        }

        [Test(Description = "the tracer marks the recompute's calls (CallPhase.Recompute); the activation cache keeps each activation once")]
        public void TracerMarksRecomputeCacheDoesNotDoubleCount()
        {
            var m = Mlp().WithHooks();
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            IReadOnlyList<string> plainKeys;
            using (var cache = m.CacheActivations())
            {
                using var y = m.call(x);
                using var loss = y.sum();
                loss.Backward();
                plainKeys = cache.Keys;
            }
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*" } });
            var phases = new List<string>();
            using var listener = new System.Diagnostics.ActivityListener
            {
                ShouldListenTo = s => s.Name == TorchHooksTelemetry.ActivitySourceName,
                Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a => { lock (phases) phases.Add($"{a.GetTagItem(TorchHooksTelemetry.ModulePath)} {a.GetTagItem(TorchHooksTelemetry.Phase)}"); },
            };
            System.Diagnostics.ActivitySource.AddActivityListener(listener);
            using var trace = m.Trace();
            using (var cache = m.CacheActivations())
            {
                using var y = m.call(x);
                using var loss = y.sum();
                loss.Backward();
                Assert.That(cache.Keys, Is.EqualTo(plainKeys));
            }
            var recomputed = trace.Calls.Where(c => c.Phase == CallPhase.Recompute).Select(c => c.Path).ToList();
            Assert.That(recomputed, Is.EquivalentTo(new[] { "blocks.0", "blocks.0.fc1", "blocks.0.fc2", "blocks.1", "blocks.1.fc1", "blocks.1.fc2", "blocks.2", "blocks.2.fc1", "blocks.2.fc2" }));
            Assert.That(trace.Calls.Count(c => c.Phase == CallPhase.Forward && c.Path == "blocks.1.fc1"), Is.EqualTo(1), "the first call, once");
            lock (phases)
            {
                Assert.That(phases.Count(p => p == "blocks.1.fc1 forward"), Is.EqualTo(1), "OpenTelemetry span of the first call");
                Assert.That(phases.Count(p => p == "blocks.1.fc1 recompute"), Is.EqualTo(1), "OpenTelemetry span of the recompute");
            }
        }

        [Test(Description = "upstream: test_utils.TestCheckpoint (in-place change of a saved input): a clear error from Backward(), not silently wrong gradients")]
        public void InPlaceChangeOfACheckpointedInputIsAnError()
        {
            var model = Mlp();
            var m = model.WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" } });
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            using var h0 = model.blocks[0].call(x);
            using var h1 = model.blocks[1].call(h0);
            using (no_grad()) h0.mul_(2);   // the saved input of blocks.1 changes after the call
            using var loss = h1.sum();
            var e = Assert.Throws<InvalidOperationException>(() => loss.Backward());
            Assert.That(e!.Message, Does.Contain("'blocks.1'").And.Contain("modified in place").And.Contain("clone"));
        }

        [Test(Description = "a failure in the recompute (a forward hook that throws) comes out of Backward() as the original exception; the process survives")]
        public void FailureInTheRecomputeComesOutOfBackward()
        {
            var m = Mlp().WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" } });
            var boom = new ApplicationException("boom in recompute");
            using var h = m["blocks.1.fc2"].register_forward_hook((mod, x, y) => ModuleCallInfo.Current.IsRecomputation ? throw boom : null);
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            var e = Assert.Throws<ApplicationException>(() => loss.Backward());
            Assert.That(e, Is.SameAs(boom));
            Assert.That(e!.Data[BackwardHookFailures.DataKey], Does.Contain("blocks.1"));
            // the next step works
            h.remove();
            using var y2 = m.call(x);
            using var loss2 = y2.sum();
            loss2.Backward();
        }

        private static (double[] Mean, double[] Grad) BatchNormStep(bool checkpointed, bool keepBuffers)
        {
            var model = nn.Sequential(("lin", nn.Linear(4, 4, dtype: float64)), ("bn", nn.BatchNorm1d(4, dtype: float64)));
            BackwardGoldenTests.Init(model);
            var m = model.WithHooks();
            using var policy = checkpointed ? m.Checkpoint(new CheckpointOptions { Paths = new[] { "bn" }, KeepBuffersInRecompute = keepBuffers }) : null;
            using var x = BackwardGoldenTests.Data(0, 6, 4);
            using var y = m.call(x);
            using var loss = (y * y).sum();
            loss.Backward();
            var bn = (BatchNorm1d)model[1];
            return (TensorAssert.Values(bn.running_mean!), TensorAssert.Values(((Linear)model[0]).weight.grad!));
        }

        [Test(Description = "BatchNorm in training mode: PyTorch's checkpoint updates the running statistics again in the recompute; KeepBuffersInRecompute updates them once, as without checkpointing")]
        public void BatchNormRunningStatistics()
        {
            var plain = BatchNormStep(false, false);
            var twice = BatchNormStep(true, false);
            var once = BatchNormStep(true, true);
            Assert.That(twice.Mean, Is.Not.EqualTo(plain.Mean), "momentum applied twice (PyTorch's behaviour)");
            Assert.That(once.Mean, Is.EqualTo(plain.Mean));
            Assert.That(twice.Grad, Is.EqualTo(plain.Grad), "gradients are not affected");
            Assert.That(once.Grad, Is.EqualTo(plain.Grad));
        }

        [Test(Description = "nested checkpointing (a block and a layer inside it): gradients bit-equal to the plain run")]
        public void NestedCheckpointing()
        {
            (double[], Dictionary<string, double[]?>) Run(string[]? paths)
            {
                var model = Mlp();
                var m = model.WithHooks();
                using var policy = paths is null ? null : m.Checkpoint(new CheckpointOptions { Paths = paths });
                using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
                using var y = m.call(x);
                using var loss = y.sum();
                loss.Backward();
                return (TensorAssert.Values(x.grad!), ParamGrads(model));
            }
            var plain = Run(null);
            var nested = Run(new[] { "blocks.**" });   // blocks.0 and blocks.0.fc1 … all checkpointed
            Assert.That(nested.Item1, Is.EqualTo(plain.Item1));
            foreach (var (k, v) in plain.Item2) Assert.That(nested.Item2[k], Is.EqualTo(v), k);
        }

        [Test(Description = "selection: '*' patterns, types, predicates; all conditions hold; bad patterns are refused before anything changes")]
        public void Selection()
        {
            var m = Mlp().WithHooks();
            using (var p = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*.fc2" } }))
                Assert.That(p.Modules.Select(n => n.Path), Is.EqualTo(new[] { "blocks.0.fc2", "blocks.1.fc2", "blocks.2.fc2" }));
            using (var p = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*" } }))
                Assert.That(p.Modules.Select(n => n.Path), Is.EqualTo(new[] { "blocks.0", "blocks.1", "blocks.2" }), "* stays within one name");
            using (var p = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.**" } }))
                Assert.That(p.Modules, Has.Count.EqualTo(9), "** crosses dots");
            using (var p = m.Checkpoint(new CheckpointOptions { Types = new[] { typeof(Block) } }))
                Assert.That(p.Modules.Select(n => n.Path), Is.EqualTo(new[] { "blocks.0", "blocks.1", "blocks.2" }));
            using (var p = m.Checkpoint(n => n.Module is Block && n.Path != "blocks.0"))
                Assert.That(p.Modules.Select(n => n.Path), Is.EqualTo(new[] { "blocks.1", "blocks.2" }));
            var e = Assert.Throws<ArgumentException>(() => m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.*", "blokcs.1" } }));
            Assert.That(e!.Message, Does.Contain("blokcs.1").And.Contain("blocks.1"));
            Assert.That(e.ParamName, Is.EqualTo("options"));
            Assert.That(m.HookPoints().All(n => n.Checkpointing is null), "nothing half-applied");
            Assert.Throws<ArgumentException>(() => m.Checkpoint(new CheckpointOptions { Types = new[] { typeof(Conv2d) } }));
        }

        [Test(Description = "nothing checkpointed: the concern is inactive (no call-path bit, dispatchers not attached), so a module call pays nothing; a removed policy leaves nothing active")]
        public void NothingCheckpointedNothingPaid()
        {
            var model = Mlp();
            var m = model.WithHooks();
            Assert.That(m.HookPoints().All(n => !n.IsAttached && n.ActiveConcerns == 0));
            var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" } });
            int bit = 1 << CheckpointConcern.Instance.Slot;
            Assert.That(m["blocks.1"].ActiveConcerns & bit, Is.EqualTo(bit));
            policy.Dispose();
            Assert.That(policy.IsRegistered, Is.False);
            Assert.That(m.HookPoints().All(n => n.ActiveConcerns == 0 && n.Checkpointing is null));
            Assert.That(TorchHooks.CallPath.ConcernsActiveEverywhere & bit, Is.Zero);
            int calls = 0;
            using var h = m["blocks.1.fc1"].register_forward_hook((mod, x, y) => { calls++; return null; });
            using var x = BackwardGoldenTests.Data(0, 5, 4).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            loss.Backward();
            Assert.That(calls, Is.EqualTo(1), "no recompute after removal");
        }

        [Test(Description = "a policy replaced by a later one: removing the first leaves the second in force")]
        public void LaterPolicyWins()
        {
            var m = Mlp().WithHooks();
            var first = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" } });
            var second = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.1" }, preserve_rng_state = false });
            first.Dispose();
            Assert.That(m["blocks.1"].Checkpointing, Is.Not.Null);
            Assert.That(m["blocks.1"].Checkpointing!.preserve_rng_state, Is.False);
            second.Dispose();
            Assert.That(m["blocks.1"].Checkpointing, Is.Null);
        }

        [Test(Description = "frozen blocks (no parameter and no input requires grad) are not checkpointed: the output does not require grad, as without checkpointing")]
        public void FrozenModuleIsLeftAlone()
        {
            var model = Mlp();
            foreach (var p in model.blocks[0].parameters()) p.requires_grad_(false);
            var m = model.WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Paths = new[] { "blocks.0" } });
            using var x = BackwardGoldenTests.Data(0, 5, 4);
            using var h = model.blocks[0].call(x);
            Assert.That(h.requires_grad, Is.False);
        }

        [Test(Description = "300 checkpointed training steps (Adam): live-tensor count flat, one recompute per block and step")]
        public void LongRunFlatLiveTensors()
        {
            var model = BackwardGoldenTests.Init(new ResMlp(4, 8, 16, dtype: ScalarType.Float32));
            var m = model.WithHooks();
            using var policy = m.Checkpoint(new CheckpointOptions { Types = new[] { typeof(Block) } });
            int recomputes = 0;
            using var counter = ModuleHooks.register_module_forward_pre_hook((mod, x) => { if (mod is Block && ModuleCallInfo.Current.IsRecomputation) recomputes++; return null; });
            var adam = optim.Adam(model.parameters(), 1e-3);
            using var data = rand(16, 8);
            using var target = rand(16, 2);
            long Train(int steps)
            {
                for (int i = 0; i < steps; i++)
                {
                    using var scope = NewDisposeScope();
                    adam.zero_grad();
                    (m.call(data) - target).square().mean().Backward();
                    adam.step();
                }
                return DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            }
            long before = Train(10);
            long after = Train(300);
            Assert.That(after - before, Is.LessThanOrEqualTo(0));
            Assert.That(recomputes, Is.EqualTo(4 * 310));
        }
    }
}
