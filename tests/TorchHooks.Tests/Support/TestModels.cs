using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests
{
    /// <summary>The model of Goldens/hooks/make_goldens.py: enc → shared → tanh(shared) → dec.</summary>
    public sealed class GoldenNet : nn.Module<Tensor, Tensor>
    {
        public readonly Sequential enc;
        public readonly Linear shared;
        public readonly Sequential dec;

        public GoldenNet() : base("GoldenNet")
        {
            enc = nn.Sequential(nn.Linear(3, 4, dtype: float64), nn.ReLU());
            shared = nn.Linear(4, 4, dtype: float64);
            dec = nn.Sequential(nn.Linear(4, 2, dtype: float64));
            RegisterComponents();
            using var _ = no_grad();
            int k = 0;
            foreach (var (_, p) in named_parameters())
            {
                using var values = (sin(arange(p.numel(), dtype: float64) * 0.37 + k) * 0.5).reshape(p.shape);
                p.copy_(values);
                k++;
            }
        }

        public override Tensor forward(Tensor x)
        {
            using var h1 = enc.call(x);
            using var h2 = shared.call(h1);
            using var h3 = shared.call(h2);
            using var h4 = tanh(h3);
            return dec.call(h4);
        }

        public static Tensor Input() => cos(arange(6, dtype: float64) * 0.5).reshape(2, 3);
    }

    /// <summary>Reads the JSON goldens copied next to the test assembly.</summary>
    public static class Goldens
    {
        public static JsonElement Load(string feature, string file)
        {
            var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Goldens", feature, file);
            return JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        }

        public static double[] Doubles(this JsonElement e) => e.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        public static string[] Strings(this JsonElement e) => e.EnumerateArray().Select(v => v.GetString()!).ToArray();
    }

    public static class TensorAssert
    {
        public static double[] Values(Tensor t)
        {
            using var flat = t.detach().to(float64).flatten();
            return flat.data<double>().ToArray();
        }

        public static void Close(Tensor actual, double[] expected, double tol = 1e-12, string? what = null)
        {
            var a = Values(actual);
            Assert.That(a, Is.EqualTo(expected).Within(tol), what);
        }
    }

    /// <summary>Modules of every arity and a tuple-returning one, for the dispatch tests.</summary>
    public sealed class Add2 : nn.Module<Tensor, Tensor, Tensor>
    {
        public Add2() : base("Add2") { }
        public override Tensor forward(Tensor a, Tensor b) => a + b;
    }
    public sealed class Add3 : nn.Module<Tensor, Tensor, Tensor, Tensor>
    {
        public Add3() : base("Add3") { }
        public override Tensor forward(Tensor a, Tensor b, Tensor c) => a + b * 10 + c * 100;
    }
    public sealed class Add4 : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
    {
        public Add4() : base("Add4") { }
        public override Tensor forward(Tensor a, Tensor b, Tensor c, Tensor d) => a + b + c + d;
    }
    public sealed class Add5 : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
    {
        public Add5() : base("Add5") { }
        public override Tensor forward(Tensor a, Tensor b, Tensor c, Tensor d, Tensor e) => a + b + c + d + e;
    }
    public sealed class Add6 : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
    {
        public Add6() : base("Add6") { }
        public override Tensor forward(Tensor a, Tensor b, Tensor c, Tensor d, Tensor e, Tensor f) => a + b + c + d + e + f;
    }
    public sealed class Split : nn.Module<Tensor, (Tensor, Tensor)>
    {
        public Split() : base("Split") { }
        public override (Tensor, Tensor) forward(Tensor x) => (x * 2, x * 3);
    }

    /// <summary>A custom module calling children of every arity through <c>call</c>.</summary>
    public sealed class AllArities : nn.Module<Tensor, Tensor>
    {
        public readonly Add2 add2 = new();
        public readonly Add3 add3 = new();
        public readonly Add4 add4 = new();
        public readonly Add5 add5 = new();
        public readonly Add6 add6 = new();
        public readonly Split split = new();

        public AllArities() : base("AllArities") { RegisterComponents(); }

        public override Tensor forward(Tensor x)
        {
            var (a, b) = split.call(x);
            var s2 = add2.call(a, b);
            var s3 = add3.call(s2, a, b);
            var s4 = add4.call(s3, a, b, x);
            var s5 = add5.call(s4, a, b, x, x);
            return add6.call(s5, a, b, x, x, x);
        }
    }

    /// <summary>A module that throws from forward.</summary>
    public sealed class Failing : nn.Module<Tensor, Tensor>
    {
        public Failing() : base("Failing") { }
        public override Tensor forward(Tensor x) => throw new InvalidOperationException("forward failed on purpose");
    }
}
