using System;
using NUnit.Framework;
using TorchHooks.NUnit;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Snapshots
{
    /// <summary>
    /// Our own regression suite guards the example models with the one-line assertion; the snapshots are committed
    /// in __snapshots__/ next to this file (in CI a missing one fails).
    /// </summary>
    [TestFixture]
    public class ExampleModelSnapshotTests
    {
        [Test, Description("examples/CallVsForward's Regression model (seeded as the demo seeds it), by reflection: it is internal to the demo")]
        public void CallVsForward_regression_model()
        {
            var type = System.Reflection.Assembly.Load("CallVsForward").GetType("Regression", throwOnError: true)!;
            torch.manual_seed(2024);
            var model = (nn.Module<Tensor, Tensor>)Activator.CreateInstance(type, nonPublic: true)!;
            using var probe = torch.tensor(new float[,] { { 1f, 0f, 0f }, { 0f, 1f, 0f }, { 0.5f, -1f, 2f } });
            Assert.That(model, Matches.Snapshot("regression", probe));
        }

        [Test, Description("GoldenNet (Support/TestModels.cs): nested Sequentials and a module called twice (shared#1)")]
        public void Golden_net()
        {
            using var x = GoldenNet.Input();
            Assert.That(new GoldenNet(), Matches.Snapshot("golden-net", x).Within(1e-12));
        }

        [Test, Description("GoldenNet in a bfloat16 autocast region: the Linears run in bf16, compared with the bf16 tolerance")]
        public void Golden_net_under_bf16_autocast()
        {
            using var x = GoldenNet.Input();
            using var amp = Amp.autocast(DeviceType.CPU, ScalarType.BFloat16);
            Assert.That(new GoldenNet(), Matches.Snapshot("golden-net-bf16", x));
        }

        [Test, Description("AllArities (Support/TestModels.cs): children with 2–6 inputs and a tuple output, recorded with their signatures")]
        public void All_arities_model()
        {
            using var x = torch.arange(6, dtype: float32).reshape(2, 3);
            var m = new AllArities().WithHooks();
            Assert.That(() => m.call(x), Matches.Snapshot("all-arities"));
        }
    }
}
