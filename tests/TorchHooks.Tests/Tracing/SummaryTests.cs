using System;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>torchinfo-style summary: its counting rules, checked against torchinfo's published resnet18 table.</summary>
    public class SummaryTests
    {
        [Test(Description = "torchinfo's resnet18 table at 1x3x224x224: total params 11,689,512, mult-adds 1.81 G, sizes 0.60/39.75/46.76/87.11 MB")]
        public void ResNet18MatchesTorchinfo()
        {
            using var raw = torchvision.models.resnet18();
            raw.eval();
            var model = raw.WithHooks();
            using var x = zeros(1, 3, 224, 224);
            var summary = model.Summary(x);
            TestContext.Out.WriteLine(summary);
            Assert.That(summary.TotalParams, Is.EqualTo(11_689_512));
            Assert.That(summary.TrainableParams, Is.EqualTo(11_689_512));
            var (macs, unit) = ModelSummary.Readable(summary.TotalMultAdds);
            Assert.That((Math.Round(macs, 2), unit), Is.EqualTo((1.81, "G")));
            Assert.That(summary.ToString(), Does.Contain("Total mult-adds (G): 1.81"));
            Assert.That(summary.ToString(), Does.Contain("Total params: 11,689,512"));
            Assert.That(summary.ToString(), Does.Contain("Input size (MB): 0.60"));
            Assert.That(summary.ToString(), Does.Contain("Params size (MB): 46.76"));
            Assert.That(summary.ToString(), Does.Contain("Forward/backward pass size (MB): 39.75"));
            var conv1 = summary.Rows.Single(r => r.Path == "conv1");
            Assert.That((conv1.Params, conv1.MultAdds, conv1.Index), Is.EqualTo((9_408L, 118_013_952L, "1-1")));
            Assert.That(summary.Rows.Single(r => r.Path == "fc").MultAdds, Is.EqualTo(513_000));
            Assert.That(summary.Rows.Single(r => r.Path == "bn1").MultAdds, Is.EqualTo(128));
            Assert.That(summary.Rows[0].OutputShape, Is.EqualTo(new long[] { 1, 1000 }));
            Assert.That(summary.ToHtml(), Does.StartWith("<table").And.Contain("11,689,512").And.Contain("├─Conv2d: 1-1"));
        }

        [Test(Description = "Counting rules: Conv params x N x spatial; Linear params x prod(out[:-1]); others batch x params; RNN inner weights prod(out[:2])")]
        public void CountingRules()
        {
            Assert.That(ModelSummary.MultAdds("Conv2d", "weight", 10, new long[] { 2, 8, 5, 5 }), Is.EqualTo(10 * 2 * 25));
            Assert.That(ModelSummary.MultAdds("Linear", "weight", 12, new long[] { 2, 7, 4 }), Is.EqualTo(12 * 14), "torchinfo PR #318: Linear on [B, T, F]");
            Assert.That(ModelSummary.MultAdds("Linear", "bias", 4, new long[] { 2, 7, 4 }), Is.EqualTo(4 * 14));
            Assert.That(ModelSummary.MultAdds("LayerNorm", "weight", 4, new long[] { 2, 7, 4 }), Is.EqualTo(4 * 2));
            Assert.That(ModelSummary.MultAdds("LSTM", "weight_ih_l0", 48, new long[] { 2, 7, 4 }), Is.EqualTo(48 * 14));
            Assert.That(ModelSummary.MultAdds("Linear", "running_mean", 4, new long[] { 2, 4 }), Is.EqualTo(0));
        }

        [Test(Description = "A shared module's params are counted once (recursive row), its mult-adds per call; containers don't count")]
        public void SharedModuleCountedOnce()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(5, 3);
            var s = model.Summary(x);
            var shared = s.Rows.Where(r => r.Path == "shared").ToList();
            Assert.That(shared.Select(r => r.IsRecursive), Is.EqualTo(new[] { false, true }));
            Assert.That(shared.Select(r => r.Params), Is.EqualTo(new[] { 20L, 0L }));
            Assert.That(shared.Select(r => r.MultAdds), Is.EqualTo(new[] { 100L, 100L }));
            Assert.That(s.TotalParams, Is.EqualTo(16 + 20 + 10));
            // lin: 16 x 5; shared: 2 x 20 x 5; head: 10 x 5; Sequential/root: containers.
            Assert.That(s.TotalMultAdds, Is.EqualTo(80 + 200 + 50));
            Assert.That(s.ToString(), Does.Contain("(recursive)"));
            Assert.That(s.Rows.Single(r => r.Path == "body").MultAdds, Is.EqualTo(0));
        }
    }
}
