using System;
using System.IO;
using System.Linq;
using NUnit.Framework;
using NUnit.Framework.Internal;
using TorchHooks.NUnit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Snapshots
{
    /// <summary>
    /// Issue 20, item 8: a snapshot records every module the summary shows — <c>nn.MultiheadAttention</c>, whose inputs
    /// include a bool and optional tensors, was skipped, so changing its head count blamed the parent block — with
    /// non-tensor arguments as values (every signature of the model's tree is hooked); the compact diff lists the
    /// snapshot's row before this run's.
    /// </summary>
    public partial class SnapshotTests
    {
        /// <summary>A block with self-attention (MultiheadAttention: query, key, value, mask, need_weights, attn_mask) and a projection.</summary>
        private sealed class MhaBlock : nn.Module<Tensor, Tensor>
        {
            private readonly MultiheadAttention attn;
            private readonly Linear proj;

            public MhaBlock(int heads) : base(nameof(MhaBlock))
            {
                attn = nn.MultiheadAttention(8, heads);
                proj = nn.Linear(8, 8);
                RegisterComponents();
            }

            public override Tensor forward(Tensor x)
            {
                var (y, weights) = attn.call(x, x, x, null, false, null);
                weights?.Dispose();
                using (y) return proj.call(y);
            }
        }

        private static nn.Module<Tensor, Tensor> Model(int heads)
        {
            torch.manual_seed(0);
            var model = nn.Sequential(("blocks", nn.Sequential(new MhaBlock(2), new MhaBlock(heads))), ("head", nn.Linear(8, 2)));
            model.eval();
            return model;
        }

        /// <summary>(L, N, E) = (3, 2, 8), large enough that attention is not near-uniform (so the head count shows in the outputs).</summary>
        private static Tensor Input() => (cos(arange(3 * 2 * 8, dtype: float32) * 0.7) * 20).reshape(3, 2, 8);

        [Test, Description("MultiheadAttention is recorded, its bool and null arguments as values, its tuple output fingerprinted; nothing is listed as unrecorded")]
        public void MultiheadAttention_is_recorded_with_its_non_tensor_arguments_as_values()
        {
            using var x = Input();
            var model = Model(heads: 2);
            var c = Snap("mha", x);
            Assert.That(Apply(c, model).Success, Is.True);
            var snapshot = ModelSnapshot.FromJson(File.ReadAllText(c.FilePath));
            var paths = snapshot.Calls.Select(call => call.Path).ToList();
            var summary = model.WithHooks().Summary(x).ToString();
            foreach (var (path, _) in model.named_modules().Where(p => p.name.Length > 0))
                Assert.That(paths, Does.Contain(path), $"{path} is in the summary but not in the snapshot:\n{summary}");
            var attn = snapshot.Calls.Single(call => call.Path == "blocks.1.attn");
            Assert.That(attn.Type, Is.EqualTo("MultiheadAttention"));
            Assert.That(attn.Inputs, Is.EqualTo(new[] { "float32[3, 2, 8]", "float32[3, 2, 8]", "float32[3, 2, 8]", "null", "false", "null" }));
            Assert.That(attn.Outputs, Is.Not.Null);
            Assert.That(attn.Outputs![0].Tensor, Is.EqualTo("float32[3, 2, 8]"));
            Assert.That(attn.Outputs[0].Mean, Is.Not.Null);
            Assert.That(attn.Outputs[1].Tensor, Is.EqualTo("undefined"), "need_weights: false gives no weights (PyTorch's None)");
        }

        [Test, Description("The reported case: a changed head count is blamed on blocks.1.attn (MultiheadAttention), not on its parent block")]
        public void Changed_head_count_names_the_attention_module()
        {
            using var x = Input();
            Assert.That(Apply(Snap("mha", x), Model(heads: 2)).Success, Is.True);
            var (ok, message) = Apply(Snap("mha", x), Model(heads: 4));
            TestContext.Out.WriteLine(message);
            Assert.That(ok, Is.False);
            Assert.That(message, Does.Contain("First divergence in call order: blocks.1.attn (MultiheadAttention)"));
            Assert.That(message, Does.Contain("field:    outputs[0]."));
        }

        [Test, Description("In the compact diff the snapshot's row (-) comes before this run's (+), for a changed module type as for every other pair")]
        public void Diff_lists_the_snapshots_row_first()
        {
            using var x = SnapMlp.Input();
            Assert.That(Apply(Snap("mlp", x), new SnapMlp(activation: "gelu")).Success, Is.True);
            var (ok, message) = Apply(Snap("mlp", x), new SnapMlp(activation: "relu"));
            Assert.That(ok, Is.False);
            var lines = message.Split('\n');
            int gelu = Array.FindIndex(lines, l => l.StartsWith("  - ") && l.Contains(" act GELU"));
            int relu = Array.FindIndex(lines, l => l.StartsWith("  + ") && l.Contains(" act ReLU"));
            Assert.That(gelu, Is.GreaterThanOrEqualTo(0), message);
            Assert.That(relu, Is.EqualTo(gelu + 1), message);
        }
    }
}
