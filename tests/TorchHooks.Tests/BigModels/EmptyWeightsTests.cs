using System;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.BigModels
{
    /// <summary>Empty construction (Accelerate's init_empty_weights): parameters and buffers on meta, a 7B shape summarised without its memory.</summary>
    public class EmptyWeightsTests
    {
        [Test(Description = "Accelerate tests/test_big_modeling.py test_init_empty_weights: parameters and buffers built inside the scope are on meta; the default device is restored")]
        public void Constructors_inside_the_scope_put_parameters_and_buffers_on_meta()
        {
            Sequential model;
            using (EmptyWeights.Scope())
            {
                Assert.That(EmptyWeights.IsActive, Is.True);
                model = nn.Sequential(("fc", nn.Linear(4, 3)), ("bn", nn.BatchNorm1d(3)));
            }
            Assert.That(EmptyWeights.IsActive, Is.False);
            Assert.That(get_default_device().type, Is.EqualTo(DeviceType.CPU));
            Assert.That(model.parameters().All(p => p.device_type == DeviceType.META), "parameters on meta");
            Assert.That(model.buffers().All(b => b.device_type == DeviceType.META), "buffers on meta");
            using var after = nn.Linear(2, 2);
            Assert.That(after.weight!.device_type, Is.EqualTo(DeviceType.CPU), "constructors after the scope allocate again");
        }

        [Test(Description = "the scope restores the default device when a constructor throws, and scopes nest")]
        public void Scope_restores_the_device_on_failure_and_nests()
        {
            Assert.Throws<InvalidOperationException>(() =>
            {
                using (EmptyWeights.Scope())
                {
                    using (EmptyWeights.Scope()) { }
                    Assert.That(get_default_device().type, Is.EqualTo(DeviceType.META), "the outer scope still holds after an inner one ends");
                    throw new InvalidOperationException("constructor failed");
                }
            });
            Assert.That(get_default_device().type, Is.EqualTo(DeviceType.CPU));
            Assert.That(EmptyWeights.IsActive, Is.False);
        }

        [Test(Description = "a LLaMA-7B shape (6,738,415,616 parameters, 27 GB in float32) built empty: +<300 MB RSS; Summary counts its parameters on a meta input")]
        public void Summary_of_a_7B_shape_built_empty()
        {
            long before = Rss();
            Llama model;
            using (EmptyWeights.Scope()) model = new Llama(vocab: 32000, dim: 4096, hidden: 11008, layers: 32);
            long grown = Rss() - before;
            TestContext.Out.WriteLine($"7B shape on meta: RSS +{grown / 1_000_000} MB");
            Assert.That(grown, Is.LessThan(300_000_000), "a meta model allocates no weights");

            var m = model.WithHooks();
            using var ids = zeros(new long[] { 1, 8 }, ScalarType.Int64, device: META);
            var summary = m.Summary(ids);
            TestContext.Out.WriteLine(string.Join("\n", summary.ToString().Split('\n').Take(12)));
            Assert.That(summary.TotalParams, Is.EqualTo(6_738_415_616L), "LLaMA-7B's published parameter count");
            Assert.That(summary.ParamsBytes, Is.EqualTo(4 * 6_738_415_616L));
            Assert.That(summary.Rows.Single(r => r.Path == "layers.0.mlp.gate").Params, Is.EqualTo(11008L * 4096));
            Assert.That(summary.Rows[0].OutputShape, Is.EqualTo(new long[] { 1, 8, 32000 }));
        }

        internal static long Rss()
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            throw new InvalidOperationException("no VmRSS in /proc/self/status");
        }

        /// <summary>RMSNorm (LLaMA's norm): one weight.</summary>
        internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
        {
            public readonly Parameter weight;
            public RmsNorm(long dim) : base(nameof(RmsNorm)) { weight = new Parameter(ones(dim)); RegisterComponents(); }
            public override Tensor forward(Tensor x) => x * rsqrt(x.pow(2).mean(new long[] { -1 }, keepdim: true) + 1e-6) * weight;
        }

        internal sealed class Attention : nn.Module<Tensor, Tensor>
        {
            public readonly Linear q, k, v, o;
            public Attention(long dim) : base(nameof(Attention))
            {
                q = nn.Linear(dim, dim, hasBias: false); k = nn.Linear(dim, dim, hasBias: false);
                v = nn.Linear(dim, dim, hasBias: false); o = nn.Linear(dim, dim, hasBias: false);
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                using var qx = q.call(x); using var kx = k.call(x); using var vx = v.call(x);
                using var scores = matmul(qx, kx.transpose(-1, -2)).softmax(-1);
                using var mixed = matmul(scores, vx);
                return o.call(mixed);
            }
        }

        internal sealed class Mlp : nn.Module<Tensor, Tensor>
        {
            public readonly Linear gate, up, down;
            public Mlp(long dim, long hidden) : base(nameof(Mlp))
            {
                gate = nn.Linear(dim, hidden, hasBias: false); up = nn.Linear(dim, hidden, hasBias: false); down = nn.Linear(hidden, dim, hasBias: false);
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                using var g = gate.call(x); using var a = nn.functional.silu(g); using var u = up.call(x); using var h = a * u;
                return down.call(h);
            }
        }

        internal sealed class Block : nn.Module<Tensor, Tensor>
        {
            public readonly RmsNorm attn_norm, mlp_norm;
            public readonly Attention attn;
            public readonly Mlp mlp;
            public Block(long dim, long hidden) : base(nameof(Block))
            {
                attn_norm = new RmsNorm(dim); attn = new Attention(dim); mlp_norm = new RmsNorm(dim); mlp = new Mlp(dim, hidden);
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                using var n1 = attn_norm.call(x); using var a = attn.call(n1); var h = x + a;
                using var n2 = mlp_norm.call(h); using var f = mlp.call(n2);
                using (h) return h + f;
            }
        }

        /// <summary>
        /// A managed embedding: TorchSharp 0.107 builds nn.Embedding in libtorch's C++ constructor on the CPU and then moves it,
        /// so it allocates its weights even inside EmptyWeights.Scope() (docs/offload.md).
        /// </summary>
        internal sealed class Embed : nn.Module<Tensor, Tensor>
        {
            public readonly Parameter weight;
            public Embed(long vocab, long dim) : base(nameof(Embed)) { weight = new Parameter(empty(vocab, dim)); RegisterComponents(); }
            public override Tensor forward(Tensor ids)
            {
                using var flat = ids.reshape(-1);
                using var rows = weight[flat];   // aten::index has a meta kernel; index_select has none
                return rows.reshape(ids.shape.Append(weight.shape[1]).ToArray());
            }
        }

        /// <summary>LLaMA-7B's parameter shapes (embedding, 32 blocks, final norm, untied head).</summary>
        internal sealed class Llama : nn.Module<Tensor, Tensor>
        {
            public readonly Embed embed;
            public readonly ModuleList<Block> layers;
            public readonly RmsNorm norm;
            public readonly Linear head;
            public Llama(long vocab, long dim, long hidden, int layers) : base(nameof(Llama))
            {
                embed = new Embed(vocab, dim);
                this.layers = nn.ModuleList(Enumerable.Range(0, layers).Select(_ => new Block(dim, hidden)).ToArray());
                norm = new RmsNorm(dim);
                head = nn.Linear(dim, vocab, hasBias: false);
                RegisterComponents();
            }
            public override Tensor forward(Tensor ids)
            {
                var x = embed.call(ids);
                foreach (var layer in layers) { var next = layer.call(x); x.Dispose(); x = next; }
                using (x) using (var n = norm.call(x)) return head.call(n);
            }
        }
    }
}
