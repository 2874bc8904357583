using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TorchHooks.Tests.Backward;

namespace TorchHooks.Tests.Checkpointing
{
    /// <summary>The models of Goldens/checkpoint/make_goldens.py, with the same parameter order and initial values.</summary>
    internal static class CheckpointModels
    {
        /// <summary>A residual MLP block: x + fc2(tanh(fc1(x))).</summary>
        internal sealed class Block : nn.Module<Tensor, Tensor>
        {
            public readonly Linear fc1;
            public readonly Linear fc2;
            public Block(long d, long h, ScalarType dtype = ScalarType.Float64) : base("Block")
            {
                fc1 = nn.Linear(d, h, dtype: dtype);
                fc2 = nn.Linear(h, d, dtype: dtype);
                RegisterComponents();
            }
            public override Tensor forward(Tensor x) => x + fc2.call(fc1.call(x).tanh());
        }

        /// <summary>blocks.0 … blocks.{n-1}, then head.</summary>
        internal sealed class ResMlp : nn.Module<Tensor, Tensor>
        {
            public readonly ModuleList<Block> blocks;
            public readonly Linear head;
            public ResMlp(int n, long d, long h, long outputs = 2, ScalarType dtype = ScalarType.Float64) : base("ResMlp")
            {
                blocks = nn.ModuleList(Enumerable.Range(0, n).Select(_ => new Block(d, h, dtype)).ToArray());
                head = nn.Linear(d, outputs, dtype: dtype);
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                foreach (var b in blocks) x = b.call(x);
                return head.call(x);
            }
        }

        /// <summary>Two inputs, a tuple output: (a * b + lin(a), tanh(lin(b))).</summary>
        internal sealed class Pair : nn.Module<Tensor, Tensor, (Tensor, Tensor)>
        {
            public readonly Linear lin = nn.Linear(3, 3, dtype: float64);
            public Pair() : base("Pair") { RegisterComponents(); }
            public override (Tensor, Tensor) forward(Tensor a, Tensor b) => (a * b + lin.call(a), lin.call(b).tanh());
        }

        /// <summary>One block called twice: head(blk(blk(x))).</summary>
        internal sealed class Twice : nn.Module<Tensor, Tensor>
        {
            public readonly Block blk = new(4, 6);
            public readonly Linear head = nn.Linear(4, 1, dtype: float64);
            public Twice() : base("Twice") { RegisterComponents(); }
            public override Tensor forward(Tensor x) => head.call(blk.call(blk.call(x)));
        }

        internal static ResMlp Mlp(int n = 3) => BackwardGoldenTests.Init(new ResMlp(n, 4, 8));

        internal static Dictionary<string, double[]?> ParamGrads(nn.Module model)
            => model.named_parameters().ToDictionary(e => e.name, e => e.parameter.grad is { } g ? TensorAssert.Values(g) : null);
    }
}
