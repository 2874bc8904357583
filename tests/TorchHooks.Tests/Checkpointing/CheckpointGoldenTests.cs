using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using TorchHooks.Tests.Backward;
using static TorchHooks.Tests.Checkpointing.CheckpointModels;

namespace TorchHooks.Tests.Checkpointing
{
    /// <summary>
    /// Gradients with checkpointing against PyTorch 1.13.1's <c>torch.utils.checkpoint</c> on the same models and weights
    /// (Goldens/checkpoint/make_goldens.py, float64, within 1e-10), and bit-equal to TorchHooks' own un-checkpointed run.
    /// </summary>
    [TestFixture]
    public class CheckpointGoldenTests
    {
        private const double Tol = 1e-10;

        private static JsonElement Case(string name) => Goldens.Load("checkpoint", "checkpoint.json").GetProperty("cases").GetProperty(name);

        private static (double[] Output, double[]? XGrad, Dictionary<string, double[]?> Params) RunMlp(bool xRequiresGrad, string[]? checkpointed)
        {
            var model = Mlp();
            var m = model.WithHooks();
            using var policy = checkpointed is null ? null : m.Checkpoint(new CheckpointOptions { Paths = checkpointed });
            using var x = BackwardGoldenTests.Data(0, 5, 4);
            if (xRequiresGrad) x.requires_grad_();
            using var y = m.call(x);
            using var w = BackwardGoldenTests.Data(1.0, 5, 2);
            using var loss = (y * w).sum();
            loss.Backward();
            return (TensorAssert.Values(y), xRequiresGrad ? TensorAssert.Values(x.grad!) : null, ParamGrads(model));
        }

        private static void AssertParams(Dictionary<string, double[]?> actual, JsonElement expected, double? tol)
        {
            foreach (var p in expected.EnumerateObject())
            {
                Assert.That(actual.ContainsKey(p.Name), p.Name);
                if (p.Value.ValueKind == JsonValueKind.Null) { Assert.That(actual[p.Name], Is.Null, p.Name); continue; }
                Assert.That(actual[p.Name], Is.EqualTo(p.Value.Doubles()).Within(tol ?? 0), p.Name);
            }
        }

        [TestCase("resmlp_all_blocks", true, new[] { "blocks.*" }, Description = "upstream: test_utils.TestCheckpoint.test_checkpoint (every block of a residual MLP)")]
        [TestCase("resmlp_middle_block", true, new[] { "blocks.1" }, Description = "upstream: test_utils.TestCheckpoint.test_checkpoint (one block)")]
        [TestCase("resmlp_input_no_grad", false, new[] { "blocks.0", "blocks.1", "blocks.2" }, Description = "upstream: test_utils.TestCheckpoint.test_checkpoint_no_tensors / non-reentrant: inputs need no grad, parameters still get theirs")]
        public void ResidualMlpMatchesPyTorch(string name, bool xRequiresGrad, string[] paths)
        {
            var golden = Case(name);
            var plain = RunMlp(xRequiresGrad, null);
            var ck = RunMlp(xRequiresGrad, paths);

            // PyTorch's checkpointed run, within 1e-10 (libtorch 2.10 vs PyTorch 1.13 kernels)
            var g = golden.GetProperty("checkpointed");
            Assert.That(ck.Output, Is.EqualTo(g.GetProperty("output").Doubles()).Within(Tol));
            if (xRequiresGrad) Assert.That(ck.XGrad, Is.EqualTo(g.GetProperty("x_grad").Doubles()).Within(Tol));
            AssertParams(ck.Params, g.GetProperty("params"), Tol);

            // our un-checkpointed run, bit for bit
            Assert.That(ck.Output, Is.EqualTo(plain.Output));
            Assert.That(ck.XGrad, Is.EqualTo(plain.XGrad));
            foreach (var (k, v) in plain.Params) Assert.That(ck.Params[k], Is.EqualTo(v), k);
            Assert.That(ck.Params.Values.All(v => v is not null), "every parameter got its gradient");
        }

        private static (double[] Y1, double[] Y2, double[] AGrad, Dictionary<string, double[]?> Params) RunPair(bool checkpointed)
        {
            var model = BackwardGoldenTests.Init(new Pair());
            var m = model.WithHooks();
            using var policy = checkpointed ? m.Checkpoint(p => p.Path == "") : null;
            using var a = BackwardGoldenTests.Data(0, 2, 3).requires_grad_();
            using var b = BackwardGoldenTests.Data(0.3, 2, 3);
            var (y1, y2) = m.call(a, b);
            using var w = BackwardGoldenTests.Data(2.0, 2, 3);
            using var loss = (y1 * w).sum();
            loss.Backward();
            var r = (TensorAssert.Values(y1), TensorAssert.Values(y2), TensorAssert.Values(a.grad!), ParamGrads(model));
            y1.Dispose(); y2.Dispose();
            return r;
        }

        [Test(Description = "upstream: test_utils.TestCheckpoint.test_checkpoint_rng_cpu's companions test_checkpoint_non_tensor_inputs_outputs / test_checkpoint_partial_grad: two inputs (one needs no grad), a tuple output with one output unused")]
        public void TwoInputsTupleOutputUnusedOutputMatchesPyTorch()
        {
            var golden = Case("pair_tuple_output").GetProperty("checkpointed");
            var plain = RunPair(false);
            var ck = RunPair(true);
            Assert.That(ck.Y1, Is.EqualTo(golden.GetProperty("output").Doubles()).Within(Tol));
            Assert.That(ck.Y2, Is.EqualTo(golden.GetProperty("output2").Doubles()).Within(Tol));
            Assert.That(ck.AGrad, Is.EqualTo(golden.GetProperty("a_grad").Doubles()).Within(Tol));
            AssertParams(ck.Params, golden.GetProperty("params"), Tol);
            Assert.That(ck.AGrad, Is.EqualTo(plain.AGrad));
            foreach (var (k, v) in plain.Params) Assert.That(ck.Params[k], Is.EqualTo(v), k);
        }

        private static (double[] Output, double[] XGrad, Dictionary<string, double[]?> Params) RunTwice(bool checkpointed)
        {
            var model = BackwardGoldenTests.Init(new Twice());
            var m = model.WithHooks();
            using var policy = checkpointed ? m.Checkpoint(new CheckpointOptions { Paths = new[] { "blk" } }) : null;
            using var x = BackwardGoldenTests.Data(0, 3, 4).requires_grad_();
            using var y = m.call(x);
            using var loss = y.sum();
            loss.Backward();
            return (TensorAssert.Values(y), TensorAssert.Values(x.grad!), ParamGrads(model));
        }

        [Test(Description = "upstream: test_utils.TestCheckpoint (a checkpointed module called twice in one forward: each call recomputed on its own)")]
        public void ModuleCalledTwiceMatchesPyTorch()
        {
            var golden = Case("block_called_twice").GetProperty("checkpointed");
            var plain = RunTwice(false);
            var ck = RunTwice(true);
            Assert.That(ck.Output, Is.EqualTo(golden.GetProperty("output").Doubles()).Within(Tol));
            Assert.That(ck.XGrad, Is.EqualTo(golden.GetProperty("x_grad").Doubles()).Within(Tol));
            AssertParams(ck.Params, golden.GetProperty("params"), Tol);
            Assert.That(ck.XGrad, Is.EqualTo(plain.XGrad));
            foreach (var (k, v) in plain.Params) Assert.That(ck.Params[k], Is.EqualTo(v), k);
        }
    }
}
