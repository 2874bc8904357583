using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.BigModels
{
    /// <summary>Accelerate's infer_auto_device_map on an empty model, and the map applied as a CPU + disk placement.</summary>
    public class DeviceMapTests
    {
        private sealed class Block : nn.Module<Tensor, Tensor>
        {
            public readonly Linear a, b;
            public Block(long w) : base(nameof(Block)) { a = nn.Linear(w, w); b = nn.Linear(w, w); RegisterComponents(); }
            public override Tensor forward(Tensor x) { using var h = a.call(x); return b.call(h); }
        }

        private static Sequential Net(long w) => nn.Sequential(("embed", nn.Linear(w, w)), ("block0", new Block(w)), ("block1", new Block(w)), ("block2", new Block(w)), ("head", nn.Linear(w, w)));

        [Test(Description = "Accelerate test_infer_auto_device_map: devices filled in order keeping room for the largest layer, no-split classes moved whole, the rest to disk; a budget below the largest layer refused")]
        public void Auto_map_fills_devices_keeping_room_for_the_largest_layer()
        {
            Sequential model;
            using (EmptyWeights.Scope()) model = Net(64);
            var m = model.WithHooks();
            long linear = 64 * 64 * 4 + 64 * 4;                  // 16,640 bytes
            // 6 Linears of budget, a Block (2 Linears, the largest no-split layer) kept free: room for embed + block0, in order.
            var map = DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = 6 * linear }, new[] { "Block" });
            TestContext.Out.WriteLine(string.Join(", ", map.Select(kv => $"{kv.Key}: {kv.Value}")));
            Assert.That(map, Is.EqualTo(new Dictionary<string, string> { ["embed"] = "cpu", ["block0"] = "cpu", ["block1"] = "disk", ["block2"] = "disk", ["head"] = "disk" }));

            // Without no-split, a Block that does not fit is split into its Linears (the room kept is one Linear): 7 - 1 = 6 Linears on cpu.
            var split = DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = 7 * linear });
            Assert.That(split["block1"], Is.EqualTo("cpu"));
            Assert.That(split["block2.a"], Is.EqualTo("cpu"));
            Assert.That(split["block2.b"], Is.EqualTo("disk"));
            Assert.That(DeviceMap.DeviceOf(split, "block2.b"), Is.EqualTo("disk"));
            Assert.That(DeviceMap.DeviceOf(split, "block1.a"), Is.EqualTo("cpu"));

            var e = Assert.Throws<ArgumentException>(() => DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = linear }, new[] { "Block" }))!;
            Assert.That(e.Message, Does.Contain("smaller than the largest layer").And.Contain("'block0'"));
            Assert.That(() => DeviceMap.DeviceOf(new Dictionary<string, string> { ["embed"] = "cpu" }, "head"), Throws.TypeOf<KeyNotFoundException>().With.Message.Contains("unplaced"));
        }

        [Test(Description = "a map applied on the CPU: resident modules loaded, disk modules offloaded; output bit-identical to the resident model")]
        public void Map_applied_as_cpu_and_disk_runs_bit_identical()
        {
            var path = Path.Combine(Path.GetTempPath(), $"th18-map-{Guid.NewGuid():N}.bin");
            try
            {
                manual_seed(11);
                var resident = Net(32);
                resident.save(path);
                using var x = ones(2, 32);
                using var want = resident.call(x);

                Sequential model;
                using (EmptyWeights.Scope()) model = Net(32);
                var m = model.WithHooks();
                var map = DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = 5 * (32 * 32 + 32) * 4 }, new[] { "Block" });
                using var checkpoint = Checkpoint.Open(path);
                using (var cpuPart = new StateDict(checkpoint))
                {
                    foreach (var key in cpuPart.Keys.ToList())
                        if (DeviceMap.DeviceOf(map, key.Substring(0, key.LastIndexOf('.'))) != "cpu") cpuPart.Remove(key);
                    m.load_state_dict(cpuPart, strict: false);
                }
                using var store = WeightStore.Disk(Checkpoint.Open(path));
                using var offload = m.Offload(store, new OffloadOptions { Modules = p => DeviceMap.DeviceOf(map, p.Path) == "disk" });
                Assert.That(offload.Paths, Is.Not.Empty);
                Assert.That(model.parameters().All(p => p.device_type == DeviceType.CPU));
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(y.eq(want).all().item<bool>());
            }
            finally { File.Delete(path); }
        }
    }
}
