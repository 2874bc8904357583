using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.ModelHooks
{
    /// <summary>
    /// The public call-path hook API (Accelerate's ModelHook / SequentialHook / add_hook_to_module): PyTorch's order
    /// (golden: Goldens/model_hooks/make_goldens.py, Accelerate's add_hook_to_module on PyTorch 1.13.1), failure
    /// steps, threads, removal, and zero cost when unattached.
    /// </summary>
    [TestFixture]
    public class ModelHookTests
    {
        /// <summary>The golden script's model: Linear(3, 3) → Linear(3, 2), float64, the weights of the other goldens.</summary>
        private static nn.Module<Tensor, Tensor> GoldenModel()
            => TorchHooks.Tests.Backward.BackwardGoldenTests.Init(nn.Sequential(nn.Linear(3, 3, dtype: float64), nn.Linear(3, 2, dtype: float64)));

        /// <summary>Records its calls; pre_forward scales the input, post_forward shifts the output (the golden script's Recorder).</summary>
        private sealed class Recorder : ModelHook
        {
            private readonly string _name;
            private readonly double _scale, _shift;
            private readonly List<string> _events;
            private readonly Dictionary<string, double> _seen;

            public Recorder(string name, double scale, double shift, List<string> events, Dictionary<string, double> seen)
            { _name = name; _scale = scale; _shift = shift; _events = events; _seen = seen; }

            public override TArgs pre_forward<TArgs>(nn.Module module, TArgs args)
            {
                var x = (Tensor)(object)args!;
                _events.Add($"{_name}.pre_forward");
                _seen[$"{_name}.pre_forward.input"] = x.sum().item<double>();
                return (TArgs)(object)(x * _scale);
            }

            public override TResult post_forward<TResult>(nn.Module module, TResult output)
            {
                var y = (Tensor)(object)output!;
                _events.Add($"{_name}.post_forward");
                _seen[$"{_name}.post_forward.output"] = y.sum().item<double>();
                return (TResult)(object)(y + _shift);
            }
        }

        [Test(Description = "Accelerate's add_hook_to_module (hooks inside forward) on PyTorch 1.13.1: pre-hooks → pre_forward (A, then appended B) → forward → post_forward (A, B) → forward hooks; forward hooks see the pre-hooks' inputs; the full backward hook sees the gradient w.r.t. the pre-hooks' inputs (golden)")]
        public void OrderAndValuesMatchAccelerateOnPyTorch()
        {
            var golden = Goldens.Load("model_hooks", "model_hooks.json");
            var events = new List<string>();
            var seen = new Dictionary<string, double>();
            var m = GoldenModel().WithHooks();
            var first = m["0"];
            using var h1 = first.register_forward_pre_hook((mod, x) => { events.Add("0.forward_pre_hook"); return x + 1; });
            using var h2 = first.register_forward_hook((mod, x, y) =>
            {
                events.Add("0.forward_hook");
                seen["0.forward_hook.input"] = x.sum().item<double>();
                seen["0.forward_hook.output"] = y.sum().item<double>();
                return null;
            });
            using var h3 = first.register_full_backward_hook((mod, gi, go) =>
            {
                events.Add("0.full_backward_hook");
                seen["0.full_backward_hook.grad_input"] = gi[0]!.sum().item<double>();
                seen["0.full_backward_hook.grad_output"] = go[0]!.sum().item<double>();
                return null;
            });
            using var a = first.add_hook_to_module(new Recorder("A", 2.0, 0.25, events, seen));
            using var b = first.add_hook_to_module(new Recorder("B", -0.5, 1.0, events, seen), append: true);
            using var h4 = m.register_forward_pre_hook((mod, x) => { events.Add("root.forward_pre_hook"); return null; });
            using var h5 = m.register_forward_hook((mod, x, y) => { events.Add("root.forward_hook"); return null; });
            using var r = m.add_hook_to_module(new Recorder("R", 1.0, 0.5, events, seen));

            using var x = (arange(6, dtype: float64).reshape(2, 3) * 0.1 - 0.2).requires_grad_(true);
            using var y = m.call(x);
            events.Add("backward");
            using var loss = y.sum();
            loss.Backward();

            Assert.That(events, Is.EqualTo(golden.GetProperty("events").Strings()));
            foreach (var p in golden.GetProperty("seen").EnumerateObject())
                Assert.That(seen[p.Name], Is.EqualTo(p.Value.GetDouble()).Within(1e-12), p.Name);
            Assert.That(y.sum().item<double>(), Is.EqualTo(golden.GetProperty("output_sum").GetDouble()).Within(1e-12));
            Assert.That(x.grad!.sum().item<double>(), Is.EqualTo(golden.GetProperty("input_grad_sum").GetDouble()).Within(1e-12));
            var w = ((TorchSharp.Modules.Linear)first.Module).weight!;
            Assert.That(w.grad!.sum().item<double>(), Is.EqualTo(golden.GetProperty("weight0_grad_sum").GetDouble()).Within(1e-12));
        }

        private sealed class Lifecycle : ModelHook
        {
            public readonly List<string> Log;
            private readonly string _name;
            public Func<bool>? ThrowInPre;
            public Lifecycle(string name, List<string> log) { _name = name; Log = log; }
            public override void init_hook(nn.Module module) => Log.Add($"{_name}.init");
            public override void detach_hook(nn.Module module) => Log.Add($"{_name}.detach");
            public override TArgs pre_forward<TArgs>(nn.Module module, TArgs args)
            {
                Log.Add($"{_name}.pre");
                if (ThrowInPre?.Invoke() == true) throw new InvalidOperationException($"{_name} pre_forward");
                return args;
            }
            public override TResult post_forward<TResult>(nn.Module module, TResult output) { Log.Add($"{_name}.post"); return output; }
            public override void forward_failed(nn.Module module) => Log.Add($"{_name}.failed");
        }

        private sealed class Throwing : nn.Module<Tensor, Tensor>
        {
            public bool Throw;
            public Throwing() : base("Throwing") { }
            public override Tensor forward(Tensor x) => Throw ? throw new InvalidOperationException("forward") : x.alias();
        }

        [Test(Description = "init_hook on attach; replacing detaches the earlier hook (Accelerate skips that); append keeps it; the handle detaches exactly its hook; remove_hook_from_module detaches all; the node is off the call path after")]
        public void AttachReplaceAppendRemove()
        {
            var log = new List<string>();
            var m = nn.Sequential(("lin", nn.Linear(2, 2))).WithHooks();
            var node = m["lin"];
            var a = node.add_hook_to_module(new Lifecycle("A", log));
            var b = node.add_hook_to_module(new Lifecycle("B", log));
            Assert.That(log, Is.EqualTo(new[] { "A.init", "B.init", "A.detach" }));
            var c = node.add_hook_to_module(new Lifecycle("C", log), append: true);
            Assert.That(node.model_hook, Is.InstanceOf<SequentialHook>());
            Assert.That(((SequentialHook)node.model_hook!).hooks.Count, Is.EqualTo(2));
            log.Clear();
            using (var x = ones(1, 2)) using (m.call(x)) { }
            Assert.That(log, Is.EqualTo(new[] { "B.pre", "C.pre", "B.post", "C.post" }));
            log.Clear();
            a.remove();   // already replaced: nothing
            Assert.That(log, Is.Empty);
            b.remove();
            Assert.That(log, Is.EqualTo(new[] { "B.detach" }));
            Assert.That(node.model_hook, Is.InstanceOf<Lifecycle>());
            log.Clear();
            Assert.That(node.remove_hook_from_module(), Is.EqualTo(1));
            Assert.That(log, Is.EqualTo(new[] { "C.detach" }));
            c.remove();
            Assert.That(log, Has.Count.EqualTo(1), "a removed hook is not detached twice");
            Assert.That(node.model_hook, Is.Null);
            Assert.That(node.ActiveConcerns, Is.Zero, "no call-path hook: the module is back on the fast path");
        }

        [Test(Description = "Selected by type inside a Hooks(...) scope (docs/call-path-hooks.md): the scope detaches every hook it attached, and only those")]
        public void ScopeDetachesEveryHookItAttached()
        {
            var log = new List<string>();
            var m = nn.Sequential(("a", nn.Linear(2, 2)), ("act", nn.ReLU()), ("b", nn.Linear(2, 2))).WithHooks();
            using var kept = m["act"].add_hook_to_module(new Lifecycle("K", log));
            var hook = new Lifecycle("L", log);
            using (m.Hooks(() => { foreach (var p in m.HookPoints<TorchSharp.Modules.Linear>()) p.add_hook_to_module(hook); }))
            {
                Assert.That(m["a"].model_hook, Is.SameAs(hook));
                Assert.That(m["b"].model_hook, Is.SameAs(hook));
            }
            Assert.That(m["a"].model_hook, Is.Null);
            Assert.That(m["b"].model_hook, Is.Null);
            Assert.That(m["act"].model_hook, Is.InstanceOf<Lifecycle>(), "a hook attached outside the scope stays");
            Assert.That(log, Is.EqualTo(new[] { "K.init", "L.init", "L.init", "L.detach", "L.detach" }));
        }

        [Test(Description = "A hook whose init_hook throws is not attached; a null hook is refused naming the argument")]
        public void BadAttachLeavesNothingAttached()
        {
            var m = nn.Linear(2, 2).WithHooks();
            Assert.Throws<InvalidOperationException>(() => m.add_hook_to_module(new InitThrows()));
            Assert.That(m.Root.model_hook, Is.Null);
            Assert.That(m.Root.ActiveConcerns, Is.Zero);
            var e = Assert.Throws<ArgumentNullException>(() => m.Root.add_hook_to_module(null!));
            Assert.That(e!.ParamName, Is.EqualTo("hook"));
        }

        private sealed class InitThrows : ModelHook
        {
            public override void init_hook(nn.Module module) => throw new InvalidOperationException("init");
        }

        [Test(Description = "Failure: forward throws → forward_failed of every hook whose pre_forward returned, the original exception unchanged; a pre_forward that throws → only the hooks before it; the next call runs normally")]
        public void FailureStepsRunForTheHooksThatStarted()
        {
            var log = new List<string>();
            var inner = new Throwing();
            var m = inner.WithHooks();
            var a = new Lifecycle("A", log);
            var b = new Lifecycle("B", log);
            using var ha = m.add_hook_to_module(a);
            using var hb = m.add_hook_to_module(b, append: true);
            using var x = ones(2);
            log.Clear();
            inner.Throw = true;
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x));
            Assert.That(e!.Message, Is.EqualTo("forward"));
            Assert.That(log, Is.EqualTo(new[] { "A.pre", "B.pre", "A.failed", "B.failed" }));

            log.Clear();
            inner.Throw = false;
            b.ThrowInPre = () => true;
            e = Assert.Throws<InvalidOperationException>(() => m.call(x));
            Assert.That(e!.Message, Is.EqualTo("B pre_forward"));
            Assert.That(log, Is.EqualTo(new[] { "A.pre", "B.pre", "A.failed" }));

            log.Clear();
            b.ThrowInPre = null;
            using (m.call(x)) { }
            Assert.That(log, Is.EqualTo(new[] { "A.pre", "B.pre", "A.post", "B.post" }));
        }

        private sealed class Doubling : ModelHook
        {
            public int Pre, Post;
            public override TArgs pre_forward<TArgs>(nn.Module module, TArgs args)
            {
                Interlocked.Increment(ref Pre);
                return CallHookValues.MapTensors(args, t => t * 2);
            }
            public override TResult post_forward<TResult>(nn.Module module, TResult output)
            {
                Interlocked.Increment(ref Post);
                return output;
            }
        }

        [Test(Description = "Threads: 4 threads call one model while another attaches and removes a hook 200 times; every call sees the hook whole or not at all (pre_forward and post_forward paired), never a half-attached state")]
        public void AttachAndRemoveWhileOtherThreadsCall()
        {
            var m = nn.Sequential(("id", new Cloning())).WithHooks();
            var hook = new Doubling();
            var node = m["id"];
            using var stop = new CancellationTokenSource();
            int bad = 0, calls = 0;
            var callers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            {
                using var x = ones(1);
                while (!stop.IsCancellationRequested)
                {
                    using var y = m.call(x);
                    double v = y.item<float>();
                    if (v != 1 && v != 2) Interlocked.Increment(ref bad);
                    Interlocked.Increment(ref calls);
                }
            })).ToArray();
            for (int i = 0; i < 200; i++)
            {
                using (node.add_hook_to_module(hook)) Thread.Yield();
            }
            stop.Cancel();
            Task.WaitAll(callers);
            Assert.That(bad, Is.Zero);
            Assert.That(calls, Is.GreaterThan(0));
            Assert.That(hook.Post, Is.EqualTo(hook.Pre), "every call that ran pre_forward ran post_forward");
            Assert.That(node.model_hook, Is.Null);
        }

        private sealed class Cloning : nn.Module<Tensor, Tensor>
        {
            public Cloning() : base("Cloning") { }
            public override Tensor forward(Tensor x) => x.clone();
        }

        private sealed class NoGradHook : ModelHook
        {
            public bool SawGrad = true;
            public override bool no_grad => true;
            public override TResult post_forward<TResult>(nn.Module module, TResult output)
            {
                SawGrad = ((Tensor)(object)output!).requires_grad || !is_grad_enabled();
                return output;
            }
        }

        [Test(Description = "Accelerate's no_grad: forward runs under torch.no_grad(); post_forward and the rest of the call run with grad mode back on")]
        public void NoGradRunsForwardWithoutGrad()
        {
            var m = nn.Linear(2, 2).WithHooks();
            var hook = new NoGradHook();
            using var h = m.add_hook_to_module(hook);
            using var x = ones(1, 2);
            using var y = m.call(x);
            Assert.That(hook.SawGrad, Is.False, "forward's output needs no grad, and grad mode is on again in post_forward");
            Assert.That(y.requires_grad, Is.False);
            Assert.That(is_grad_enabled(), Is.True);
        }

        private sealed class TwoInputs : nn.Module<Tensor, Tensor, Tensor>
        {
            public TwoInputs() : base("TwoInputs") { }
            public override Tensor forward(Tensor a, Tensor b) => a + b;
        }

        [Test(Description = "One hook object on modules of any signature: a (Tensor, Tensor) module's inputs are mapped by MapTensors; tensors pre_forward made are disposed when the call ends, and the replaced output too (live-tensor count flat over 200 calls)")]
        public void AnySignatureAndNoLeaks()
        {
            var m = new TwoInputs().WithHooks();
            var hook = new Doubling();
            using var h = m.add_hook_to_module(hook);
            using var a = ones(2);
            using var b = ones(2);
            using (var y = m.call(a, b)) Assert.That(y.sum().item<float>(), Is.EqualTo(8f));
            var lin = nn.Linear(2, 2).WithHooks();
            using var h2 = lin.add_hook_to_module(new ShiftOutput());
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 200; i++)
            {
                using var y = m.call(a, b);
                using var z = lin.call(a);
            }
            long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            Assert.That(after - before, Is.LessThanOrEqualTo(0), "no tensor left behind per call");
        }

        [Test(Description = "Zero cost where not attached: the concern is never active everywhere, and a module without a hook stays on the fast path while its sibling has one")]
        public void UnattachedModulesStayOnTheFastPath()
        {
            var m = nn.Sequential(("a", nn.Linear(2, 2)), ("b", nn.Linear(2, 2))).WithHooks();
            using var h = m["a"].add_hook_to_module(new Doubling());
            Assert.That(ModelHookConcern.Instance.IsActiveEverywhere, Is.False);
            Assert.That(m["a"].ActiveConcerns, Is.EqualTo(1 << ModelHookConcern.Instance.Slot));
            Assert.That(m["b"].ActiveConcerns, Is.Zero);
            Assert.That(m.Root.ActiveConcerns, Is.Zero);
        }

        private sealed class ShiftOutput : ModelHook
        {
            public override TResult post_forward<TResult>(nn.Module module, TResult output)
                => CallHookValues.MapTensors(output, t => t + 1);
        }
    }
}
