using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Backward
{
    /// <summary>
    /// Gradients and hook observations against PyTorch 1.13.1 (Goldens/backward/make_goldens.py): every module has
    /// an observing full backward hook; some scale or zero grad_input (full hooks) or grad_output (backward
    /// pre-hooks); the firing order, what each hook saw (None entries included), the weight and input gradients
    /// must agree within 1e-6.
    /// </summary>
    [TestFixture]
    public class BackwardGoldenTests
    {
        private const double Tol = 1e-6;

        internal static T Init<T>(T m) where T : nn.Module
        {
            using var _ = no_grad();
            int k = 0;
            foreach (var (_, p) in m.named_parameters())
            {
                using var values = (sin(arange(p.numel(), dtype: float64) * 0.37 + k) * 0.5).reshape(p.shape);
                p.copy_(values);
                k++;
            }
            return m;
        }

        internal static Tensor Data(double phase, params long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            return cos(arange(n, dtype: float64) * 0.5 + phase).reshape(shape);
        }

        internal static Sequential Mlp() => Init(nn.Sequential(nn.Linear(4, 8, dtype: float64), nn.Tanh(), nn.Linear(8, 3, dtype: float64)));

        internal sealed class ConvNet : nn.Module<Tensor, Tensor>
        {
            public readonly Conv2d conv1 = nn.Conv2d(1, 2, 3, dtype: float64);
            public readonly ReLU relu = nn.ReLU();
            public readonly Conv2d conv2 = nn.Conv2d(2, 3, 3, dtype: float64);
            public readonly Linear fc = nn.Linear(3 * 2 * 2, 2, dtype: float64);
            public ConvNet() : base("ConvNet") { RegisterComponents(); }
            public override Tensor forward(Tensor x)
            {
                using var h1 = conv1.call(x);
                using var h2 = relu.call(h1);
                using var h3 = conv2.call(h2);
                using var h4 = h3.flatten(1);
                return fc.call(h4);
            }
        }

        internal sealed class Mul : nn.Module<Tensor, Tensor, Tensor>
        {
            public Mul() : base("Mul") { }
            public override Tensor forward(Tensor a, Tensor b) => a * b + a;
        }

        private sealed record Event(string Module, double[]?[] GradInput, double[]?[] GradOutput);

        private static double[]? Flat(Tensor? t) => t is null ? null : TensorAssert.Values(t);

        private static IReadOnlyList<Tensor?>? Act(string action, IReadOnlyList<Tensor?> grads) => action switch
        {
            "scale2" => grads.Select(g => g is null ? null : g * 2).ToArray(),
            "zero" => grads.Select(g => g is null ? null : g * 0).ToArray(),
            "half" => grads.Select(g => g is null ? null : g * 0.5).ToArray(),
            _ => null,
        };

        /// <summary>The C# side of make_goldens.py's run(): hooks on every module (not on nested Sequentials), backward, the record.</summary>
        private static (List<Event> Events, Dictionary<string, double[]?> Params, double[]?[] Inputs) Run(
            IHookedModule m, Func<Tensor> forward, Tensor[] inputs, Dictionary<string, string>? full = null, Dictionary<string, string>? pre = null)
        {
            var events = new List<Event>();
            using var scope = m.Hooks(() =>
            {
                foreach (var point in m.HookPoints())
                {
                    if (point.Module is Sequential && point.Path != "") continue;
                    string name = point.Path;
                    string action = full is not null && full.TryGetValue(name, out var a) ? a : "observe";
                    point.register_full_backward_hook((mod, gi, go) =>
                    {
                        Assert.That(mod, Is.SameAs(point.Module));
                        events.Add(new Event(name, gi.Select(Flat).ToArray(), go.Select(Flat).ToArray()));
                        return Act(action, gi);
                    });
                }
                foreach (var (name, action) in pre ?? new())
                    m[name].register_full_backward_pre_hook((mod, go) => Act(action, go));
            });
            using (var d = NewDisposeScope())
            {
                var loss = forward();
                loss.Backward();
            }
            var ps = m.Unwrap().named_parameters().ToDictionary(p => p.name, p => Flat(p.parameter.grad));
            return (events, ps, inputs.Select(x => Flat(x.grad)).ToArray());
        }

        private static void Check(string name, (List<Event> Events, Dictionary<string, double[]?> Params, double[]?[] Inputs) actual)
        {
            var golden = Goldens.Load("backward", "backward.json").GetProperty("cases").GetProperty(name);
            var events = golden.GetProperty("events").EnumerateArray().ToList();
            Assert.That(actual.Events.Select(e => e.Module), Is.EqualTo(events.Select(e => e.GetProperty("module").GetString())), $"{name}: firing order");
            for (int i = 0; i < events.Count; i++)
            {
                Lists(events[i].GetProperty("grad_input"), actual.Events[i].GradInput, $"{name}: grad_input of '{actual.Events[i].Module}'");
                Lists(events[i].GetProperty("grad_output"), actual.Events[i].GradOutput, $"{name}: grad_output of '{actual.Events[i].Module}'");
            }
            foreach (var p in golden.GetProperty("params").EnumerateObject())
                One(p.Value, actual.Params[p.Name], $"{name}: {p.Name}.grad");
            Lists(golden.GetProperty("inputs"), actual.Inputs, $"{name}: input .grad");
        }

        private static void Lists(JsonElement expected, double[]?[] actual, string what)
        {
            var e = expected.EnumerateArray().ToList();
            Assert.That(actual.Length, Is.EqualTo(e.Count), what + " (length)");
            for (int i = 0; i < e.Count; i++) One(e[i], actual[i], $"{what}[{i}]");
        }

        private static void One(JsonElement expected, double[]? actual, string what)
        {
            if (expected.ValueKind == JsonValueKind.Null) { Assert.That(actual, Is.Null, what + " is None in PyTorch"); return; }
            Assert.That(actual, Is.Not.Null, what + " is a tensor in PyTorch");
            Assert.That(actual, Is.EqualTo(expected.Doubles()).Within(Tol), what);
        }

        private static Func<Tensor> Sq(Func<Tensor> f) => () => { var y = f(); return (y * y).sum(); };

        private static void MlpCase(string name, Dictionary<string, string>? full = null, Dictionary<string, string>? pre = null)
        {
            var m = Mlp().WithHooks();
            using var x = Data(0, 2, 4).requires_grad_();
            Check(name, Run(m, Sq(() => m.call(x)), new[] { x }, full, pre));
        }

        [Test] public void MlpObserve() => MlpCase("mlp_observe");
        [Test] public void MlpFullHookScalesGradInput() => MlpCase("mlp_scale_input_grad", full: new() { ["0"] = "scale2" });
        [Test] public void MlpFullHookZeroesGradInput() => MlpCase("mlp_zero_grad_input", full: new() { ["2"] = "zero" });
        [Test] public void MlpPreHookHalvesGradOutput() => MlpCase("mlp_pre_half", pre: new() { ["2"] = "half" });
        [Test] public void MlpPreHookZeroesGradOutput() => MlpCase("mlp_pre_zero", pre: new() { ["1"] = "zero" });

        private static void ConvCase(string name, Dictionary<string, string>? full = null, Dictionary<string, string>? pre = null)
        {
            var m = Init(new ConvNet()).WithHooks();
            using var x = Data(0.3, 2, 1, 6, 6).requires_grad_();
            Check(name, Run(m, Sq(() => m.call(x)), new[] { x }, full, pre));
        }

        [Test] public void ConvNetObserve() => ConvCase("conv_observe");
        [Test] public void ConvNetScaleAndPreHook() => ConvCase("conv_scale", full: new() { ["conv2"] = "scale2" }, pre: new() { ["fc"] = "half" });

        private static void MulCase(string name, bool bGrad, Dictionary<string, string>? full = null)
        {
            var m = new Mul().WithHooks();
            using var a = Data(0, 3, 2).requires_grad_();
            using var b = Data(1.0, 3, 2).requires_grad_(bGrad);
            Check(name, Run(m, Sq(() => m.call(a, b)), new[] { a, b }, full));
        }

        [Test] public void MultiInput() => MulCase("multi_input", true);
        [Test] public void MultiInputScale() => MulCase("multi_input_scale", true, new() { [""] = "scale2" });
        [Test(Description = "upstream: TestModuleHookNN.test_hook_extra_input / test_hook_buffer_requires_grad-like: an input that needs no grad gets zeros (PyTorch's identity node materializes them)")]
        public void MultiInputOneWithoutGrad() => MulCase("multi_input_b_no_grad", false);

        [Test]
        public void TupleOutput()
        {
            var m = new Split().WithHooks();
            using var x = Data(0, 3).requires_grad_();
            Check("tuple_output", Run(m, () => { var (p, q) = m.call(x); return (p * q).sum(); }, new[] { x }));
        }

        [Test(Description = "an unused output has grad_output None")]
        public void UnusedOutput()
        {
            var m = new Split().WithHooks();
            using var x = Data(0, 3).requires_grad_();
            Check("unused_output", Run(m, () => { var (p, _) = m.call(x); return (p * p).sum(); }, new[] { x }));
        }

        [Test(Description = "upstream: TestModuleHookNN.test_hook_no_requires_grad")]
        public void NoInputRequiresGrad()
        {
            var m = Init(nn.Linear(4, 2, dtype: float64)).WithHooks();
            using var x = Data(0, 2, 4);
            Check("no_input_requires_grad", Run(m, Sq(() => m.call(x)), new[] { x }));
        }
    }
}
