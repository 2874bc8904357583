using System;
using System.Collections.Generic;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.ModelHooks
{
    /// <summary>docs/call-path-hooks.md's worked example (Accelerate's AlignDevicesHook with io_same_device), run.</summary>
    [TestFixture]
    public class AlignDevicesExampleTests
    {
        /// <summary>The class of the docs page, as written there (plus a log of its steps for the test).</summary>
        public sealed class AlignDevicesHook : ModelHook
        {
            private readonly Device _executionDevice;
            private readonly bool _ioSameDevice;
            [ThreadStatic] private static Stack<Device?>? t_inputDevices;
            public readonly List<string> Log = new();

            public AlignDevicesHook(Device executionDevice, bool ioSameDevice = false)
            {
                _executionDevice = executionDevice;
                _ioSameDevice = ioSameDevice;
            }

            public override void init_hook(nn.Module module) { Log.Add("init"); module.to(_executionDevice); }

            public override TArgs pre_forward<TArgs>(nn.Module module, TArgs args)
            {
                Log.Add("pre");
                if (_ioSameDevice)
                {
                    Device? first = null;
                    CallHookValues.MapTensors(args, t => { first ??= t.device; return t; });
                    (t_inputDevices ??= new Stack<Device?>()).Push(first);
                }
                return CallHookValues.MapTensors(args, t => On(t, _executionDevice) ? t : t.to(_executionDevice));
            }

            public override TResult post_forward<TResult>(nn.Module module, TResult output)
            {
                Log.Add("post");
                if (!_ioSameDevice || t_inputDevices!.Pop() is not { } back) return output;
                return CallHookValues.MapTensors(output, t => On(t, back) ? t : t.to(back));
            }

            public override void forward_failed(nn.Module module)
            {
                Log.Add("failed");
                if (_ioSameDevice) t_inputDevices?.Pop();
            }

            public static int Pending => t_inputDevices?.Count ?? 0;

            private static bool On(Tensor t, Device d) => t.device_type == d.type && (d.index < 0 || t.device_index == d.index);
        }

        [Test(Description = "The worked example on CPU: init_hook on attach, pre/post per call, output on the input's device, per-call state balanced, no tensor left behind")]
        public void WorkedExampleRuns()
        {
            var model = nn.Sequential(("embed", nn.Linear(4, 8)), ("act", nn.ReLU()), ("head", nn.Linear(8, 2))).WithHooks();
            var device = cuda.is_available() ? CUDA : CPU;
            var hook = new AlignDevicesHook(device, ioSameDevice: true);
            using var handle = model["head"].add_hook_to_module(hook);
            using var x = ones(3, 4);
            using (var y = model.call(x))
                Assert.That(y.device_type, Is.EqualTo(x.device_type));
            Assert.That(hook.Log, Is.EqualTo(new[] { "init", "pre", "post" }));
            Assert.That(AlignDevicesHook.Pending, Is.Zero);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 100; i++) using (model.call(x)) { }
            Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.LessThanOrEqualTo(0));
            Assert.That(AlignDevicesHook.Pending, Is.Zero);
        }

        [Test(Description = "A failing call pops the example's per-call state through forward_failed")]
        public void WorkedExampleFailureKeepsStateBalanced()
        {
            var model = nn.Sequential(("head", nn.Linear(8, 2))).WithHooks();
            var hook = new AlignDevicesHook(CPU, ioSameDevice: true);
            using var handle = model["head"].add_hook_to_module(hook);
            using var wrong = ones(3, 5);   // Linear(8, 2) rejects 5 features
            Assert.That(() => model.call(wrong), Throws.Exception);
            Assert.That(hook.Log, Is.EqualTo(new[] { "init", "pre", "failed" }));
            Assert.That(AlignDevicesHook.Pending, Is.Zero);
        }
    }
}
