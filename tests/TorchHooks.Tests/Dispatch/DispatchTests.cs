using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Dispatch
{
    /// <summary>
    /// Accelerate's dispatch_model / AlignDevicesHook on cpu and meta (CUDA cannot run here): placement keeping the
    /// Parameter objects, inputs moved to each module's device, io_same_device on the top level, disk entries through
    /// Offload, removal restoring, and refusals that change nothing.
    /// </summary>
    public class DispatchTests
    {
        /// <summary>A Linear that records the device its input arrives on (inside forward: after the call-path hooks' pre_forward).</summary>
        private sealed class Probe : nn.Module<Tensor, Tensor>
        {
            public readonly Linear inner;
            public readonly List<DeviceType> Seen = new();
            public Probe(long i, long o) : base(nameof(Probe)) { inner = nn.Linear(i, o); RegisterComponents(); }
            public override Tensor forward(Tensor x) { Seen.Add(x.device_type); return inner.call(x); }
        }

        /// <summary>Main path on one module, a side branch computed and dropped (so a meta side branch still gives a CPU output).</summary>
        private sealed class Branchy : nn.Module<Tensor, Tensor>
        {
            public readonly Probe main, side;
            public readonly Sequential tail;
            public DeviceType SideOutput;
            public Branchy() : base(nameof(Branchy))
            {
                main = new Probe(4, 4); side = new Probe(4, 3);
                tail = nn.Sequential(("relu", nn.ReLU()), ("out", nn.Linear(4, 2)));
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                using (var s = side.call(x)) SideOutput = s.device_type;
                using var h = main.call(x);
                return tail.call(h);
            }
        }

        /// <summary>A two-input module (its input is a tuple on the call path) recording where both inputs arrive.</summary>
        private sealed class Pair : nn.Module<Tensor, Tensor, Tensor>
        {
            public readonly Linear inner;
            public readonly List<(DeviceType, DeviceType)> Seen = new();
            public Pair() : base(nameof(Pair)) { inner = nn.Linear(4, 4); RegisterComponents(); }
            public override Tensor forward(Tensor a, Tensor b) { Seen.Add((a.device_type, b.device_type)); using var h = inner.call(a); return h + b; }
        }

        private sealed class WithPair : nn.Module<Tensor, Tensor>
        {
            public readonly Pair pair;
            public readonly Linear head;
            public WithPair() : base(nameof(WithPair)) { pair = new Pair(); head = nn.Linear(4, 2); RegisterComponents(); }
            public override Tensor forward(Tensor x) { using (var p = pair.call(x, x)) { } return head.call(x); }
        }

        [Test(Description = "inputs inside a tuple (a two-input module) both move to the module's execution device")]
        public void Tuple_inputs_move_to_the_execution_device()
        {
            var net = new WithPair();
            var m = net.WithHooks();
            using var handle = m.dispatch_model(new Dictionary<string, string> { ["pair"] = "meta", ["head"] = "cpu" }, main_device: "cpu");
            using var x = rand(3, 4);
            using (var y = m.call(x)) Assert.That(y.device_type, Is.EqualTo(DeviceType.CPU));
            Assert.That(net.pair.Seen, Is.EqualTo(new[] { (DeviceType.META, DeviceType.META) }));
        }

        /// <summary>What must not change when a dispatch is refused: objects, devices, values, hooks.</summary>
        private sealed class Snapshot
        {
            private readonly List<(string Name, Tensor Object, DeviceType Device, Tensor? Copy)> _tensors = new();
            private readonly IHookedModule _m;
            public Snapshot(IHookedModule m)
            {
                _m = m;
                var root = m.Unwrap();
                foreach (var (n, p) in root.named_parameters()) _tensors.Add((n, p, p.device_type, p.device_type == DeviceType.META ? null : p.detach().clone()));
                foreach (var (n, b) in root.named_buffers()) _tensors.Add((n, b, b.device_type, b.device_type == DeviceType.META ? null : b.detach().clone()));
            }
            public void AssertUnchanged()
            {
                var root = _m.Unwrap();
                var now = root.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(root.named_buffers()).ToList();
                Assert.That(now.Count, Is.EqualTo(_tensors.Count));
                for (int i = 0; i < now.Count; i++)
                {
                    var (name, obj, device, copy) = _tensors[i];
                    Assert.That(now[i].Item1, Is.EqualTo(name));
                    Assert.That(ReferenceEquals(now[i].Item2, obj), $"'{name}' is another object");
                    Assert.That(obj.device_type, Is.EqualTo(device), $"'{name}' moved");
                    if (copy is not null) Assert.That(obj.eq(copy).all().item<bool>(), $"'{name}' changed");
                }
                foreach (var path in _m.Paths) Assert.That(_m[path].model_hook, Is.Null, $"a hook was left on '{path}'");
            }
        }

        private static List<Tensor> Tensors(nn.Module m) => m.parameters().Cast<Tensor>().Concat(m.buffers()).ToList();

        [Test(Description = "a cpu + meta map: the meta submodule's parameters are on meta (same objects) and its input arrives on meta; the other modules run on cpu; the top-level output is on the input's device; removal restores objects, devices and values")]
        public void Cpu_and_meta_map_moves_inputs_and_keeps_parameter_objects()
        {
            manual_seed(1);
            var net = new Branchy();
            var m = net.WithHooks();
            var before = Tensors(net);
            var values = before.Select(t => t.detach().clone()).ToList();
            using var x = rand(2, 4);
            using var want = net.forward(x);
            net.side.Seen.Clear(); net.main.Seen.Clear();

            var handle = m.dispatch_model(new Dictionary<string, string> { ["main"] = "cpu", ["side"] = "meta", ["tail"] = "cpu" }, main_device: "cpu");
            Assert.That(handle.main_device!.type, Is.EqualTo(DeviceType.CPU));
            var during = Tensors(net);
            Assert.That(during.Zip(before).All(p => ReferenceEquals(p.First, p.Second)), "Parameter objects kept");
            Assert.That(net.side.inner.weight!.device_type, Is.EqualTo(DeviceType.META));
            Assert.That(ReferenceEquals(net.side.inner.weight, before[net.parameters().ToList().FindIndex(p => ReferenceEquals(p, net.side.inner.weight))]));
            Assert.That(net.main.inner.weight!.device_type, Is.EqualTo(DeviceType.CPU));

            using (var y = m.call(x))
            {
                Assert.That(y.device_type, Is.EqualTo(DeviceType.CPU));
                Assert.That(y.eq(want).all().item<bool>(), "the cpu path computes the same output");
            }
            Assert.That(net.side.Seen, Is.EqualTo(new[] { DeviceType.META }), "the side branch's input was moved to meta");
            Assert.That(net.SideOutput, Is.EqualTo(DeviceType.META));
            Assert.That(net.main.Seen, Is.EqualTo(new[] { DeviceType.CPU }));
            long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 50; i++) using (m.call(x)) { }
            Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - live, Is.LessThanOrEqualTo(0), "the moved inputs are disposed after each call");

            handle.Dispose();
            var after = Tensors(net);
            Assert.That(after.Zip(before).All(p => ReferenceEquals(p.First, p.Second)), "Parameter objects kept after removal");
            Assert.That(after.All(t => t.device_type == DeviceType.CPU));
            for (int i = 0; i < after.Count; i++) Assert.That(after[i].eq(values[i]).all().item<bool>(), "values restored");
            foreach (var path in m.Paths) Assert.That(m[path].model_hook, Is.Null);
        }

        [Test(Description = "Accelerate's hook layout: io_same_device on the top level (main device), a placing hook per mapped module, an input-moving hook on each submodule with tensors under it, none on parameterless modules")]
        public void Hooks_follow_attach_align_device_hook_on_blocks()
        {
            var net = new Branchy();
            var m = net.WithHooks();
            using var handle = m.dispatch_model(new Dictionary<string, string> { ["main"] = "cpu", ["side"] = "meta", ["tail"] = "cpu" }, main_device: "cpu");
            AlignDevicesHook Hook(string p) => (AlignDevicesHook)m[p].model_hook!;
            Assert.That(Hook("").io_same_device && !Hook("").place_submodules && Hook("").execution_device.type == DeviceType.CPU);
            Assert.That(Hook("side").place_submodules && !Hook("side").io_same_device && Hook("side").execution_device.type == DeviceType.META);
            Assert.That(!Hook("side.inner").place_submodules && Hook("side.inner").execution_device.type == DeviceType.META);
            Assert.That(Hook("tail").place_submodules);
            Assert.That(m[("tail.relu")].model_hook, Is.Null, "a module without tensors gets no hook");
            Assert.That(Hook("tail.out").execution_device.type, Is.EqualTo(DeviceType.CPU));
            Assert.That(handle.HookCount, Is.EqualTo(7));   // "", main, main.inner, side, side.inner, tail, tail.out
        }

        [Test(Description = "io_same_device: the top level moves the input to the main device and tries to move the output back to where the input was; from meta (no data) that is refused naming the reason")]
        public void Io_same_device_moves_the_output_back_to_the_input_device()
        {
            var model = nn.Sequential(("a", new Probe(4, 4)), ("b", new Probe(4, 2)));
            var m = model.WithHooks();
            using var handle = m.dispatch_model(new Dictionary<string, string> { ["a"] = "cpu", ["b"] = "meta" });
            Assert.That(handle.main_device!.type, Is.EqualTo(DeviceType.META), "Accelerate's default main device: the first non-cpu device");
            using var x = rand(2, 4);
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x).Dispose())!;
            // the top level moved x to meta (the main device), so "a" (on cpu) cannot take it
            Assert.That(e.Message, Does.Contain("An input of Probe is on meta (no data) and cannot move to its execution device, cpu"));

            handle.Dispose();
            using var handle2 = m.dispatch_model(new Dictionary<string, string> { ["a"] = "cpu", ["b"] = "meta" }, main_device: "cpu");
            var e2 = Assert.Throws<InvalidOperationException>(() => m.call(x).Dispose())!;
            Assert.That(e2.Message, Does.Contain("cannot go back to cpu, where the inputs were (io_same_device)"));
            Assert.That(((Probe)model[1]).Seen, Is.EqualTo(new[] { DeviceType.META }), "b's input was moved to meta");
        }

        [Test(Description = "an optimizer built before dispatch keeps working: the same Parameter objects are trained through the hooks (gradients flow across the moves) and after removal")]
        public void Optimizer_built_before_dispatch_keeps_working()
        {
            manual_seed(3);
            var model = nn.Sequential(("a", nn.Linear(4, 4)), ("b", nn.Linear(4, 1)));
            var m = model.WithHooks();
            var opt = optim.SGD(model.parameters(), 0.1);
            using var handle = m.dispatch_model(new Dictionary<string, string> { [""] = "cpu" }, force_hooks: true);
            Assert.That(handle.HookCount, Is.EqualTo(3));
            using var x = rand(8, 4);
            float Loss()
            {
                opt.zero_grad();
                using var y = m.call(x);
                using var loss = y.pow(2).mean();
                loss.backward();
                opt.step();
                return loss.item<float>();
            }
            float first = Loss(), second = Loss();
            Assert.That(second, Is.LessThan(first), "the optimizer's parameters are the model's");
            Assert.That(model.parameters().All(p => p.grad is not null));

            var weight = ((Linear)model[0]).weight!;
            using var meta = m.dispatch_model(new Dictionary<string, string> { ["a"] = "meta", ["b"] = "cpu" }, main_device: "cpu");
            Assert.That(weight.device_type, Is.EqualTo(DeviceType.META));
            meta.Dispose();
            Assert.That(weight.device_type, Is.EqualTo(DeviceType.CPU));
            float third = Loss();
            Assert.That(third, Is.LessThan(second), "training continues on the restored objects");
        }

        [Test(Description = "a one-device map without force_hooks moves the tensors and attaches no hook (Accelerate: model.to(device)); removal restores")]
        public void One_device_map_moves_without_hooks()
        {
            var model = nn.Sequential(("a", nn.Linear(4, 4)), ("n", nn.BatchNorm1d(4)));
            var m = model.WithHooks();
            var before = Tensors(model);
            var handle = m.dispatch_model(new Dictionary<string, string> { ["a"] = "meta", ["n"] = "meta" });
            Assert.That(handle.HookCount, Is.Zero);
            Assert.That(handle.main_device, Is.Null);
            Assert.That(Tensors(model).All(t => t.device_type == DeviceType.META));
            Assert.That(Tensors(model).Zip(before).All(p => ReferenceEquals(p.First, p.Second)));
            handle.Dispose();
            Assert.That(Tensors(model).All(t => t.device_type == DeviceType.CPU));
        }

        [Test(Description = "disk entries go through Offload (executed on the main device, cpu): output bit-identical to the resident model; removal makes them resident")]
        public void Disk_entries_are_offloaded_and_run_bit_identical()
        {
            manual_seed(5);
            var model = nn.Sequential(("0", nn.Linear(16, 16)), ("1", nn.Linear(16, 16)), ("2", nn.Linear(16, 4)));
            var m = model.WithHooks();
            using var x = rand(3, 16);
            using var want = model.forward(x);
            var before = Tensors(model);
            using var store = WeightStore.Host(m.StateDict());
            var handle = m.dispatch_model(new Dictionary<string, string> { ["0"] = "cpu", ["1"] = "disk", ["2"] = "cpu" }, offloadStore: store);
            Assert.That(handle.Offload!.Paths, Is.EqualTo(new[] { "1" }));
            Assert.That(handle.main_device!.type, Is.EqualTo(DeviceType.CPU));
            Assert.That(((Linear)model[1]).weight!.numel(), Is.Zero, "offloaded between calls");
            using (no_grad())
            using (var y = m.call(x))
                Assert.That(y.eq(want).all().item<bool>());
            handle.Dispose();
            Assert.That(Tensors(model).Zip(before).All(p => ReferenceEquals(p.First, p.Second)));
            using var again = model.forward(x);
            Assert.That(again.eq(want).all().item<bool>());
            foreach (var path in m.Paths) Assert.That(m[path].model_hook, Is.Null);
        }

        private sealed class Block : nn.Module<Tensor, Tensor>
        {
            public readonly Linear a, b;
            public Block(long w) : base(nameof(Block)) { a = nn.Linear(w, w); b = nn.Linear(w, w); RegisterComponents(); }
            public override Tensor forward(Tensor x) { using var h = a.call(x); return b.call(h); }
        }

        [Test(Description = "infer_auto_device_map's plan for an empty model, its cpu part loaded, dispatched with the rest from a disk store (an offload folder): output bit-identical to the resident model")]
        public void Auto_map_on_an_empty_model_dispatches_and_runs_bit_identical()
        {
            Sequential Net() => nn.Sequential(("embed", nn.Linear(32, 32)), ("block0", new Block(32)), ("block1", new Block(32)), ("block2", new Block(32)), ("head", nn.Linear(32, 32)));
            var folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"th18-dispatch-{Guid.NewGuid():N}");
            try
            {
                manual_seed(11);
                var resident = Net();
                using (var sd = resident.WithHooks().StateDict()) OffloadFolder.Write(sd, folder);
                using var x = rand(2, 32);
                using var want = resident.call(x);

                Sequential model;
                using (EmptyWeights.Scope()) model = Net();
                var m = model.WithHooks();
                var map = DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = 5 * (32 * 32 + 32) * 4 }, new[] { "Block" });
                Assert.That(map.Values.Distinct().OrderBy(v => v), Is.EqualTo(new[] { "cpu", "disk" }));
                using (var checkpoint = Checkpoint.Open(folder))
                using (var cpuPart = new StateDict(checkpoint))
                {
                    foreach (var key in cpuPart.Keys.ToList())
                        if (DeviceMap.DeviceOf(map, key.Substring(0, key.LastIndexOf('.'))) != "cpu") cpuPart.Remove(key);
                    m.load_state_dict(cpuPart, strict: false);
                }
                using var store = WeightStore.Disk(Checkpoint.Open(folder));
                using (var handle = m.dispatch_model(map, offloadStore: store))
                using (no_grad())
                using (var y = m.call(x))
                {
                    Assert.That(handle.Offload!.Paths, Is.Not.Empty);
                    Assert.That(y.eq(want).all().item<bool>());
                }
                Assert.That(model.parameters().All(p => p.device_type == DeviceType.CPU && p.numel() > 0), "after removal every weight is resident");
            }
            finally { if (System.IO.Directory.Exists(folder)) System.IO.Directory.Delete(folder, recursive: true); }
        }

        /// <summary>A module with a tensor of its own and children (infer_auto_device_map splits it into an entry for itself and one per child).</summary>
        private sealed class Scaled : nn.Module<Tensor, Tensor>
        {
            public readonly Parameter scale;
            public readonly Linear a, b;
            public Scaled(long w) : base(nameof(Scaled)) { scale = new Parameter(ones(w) * 0.5f); a = nn.Linear(w, w); b = nn.Linear(w, w); RegisterComponents(); }
            public override Tensor forward(Tensor x) { using var s = x * scale; using var h = a.call(s); return b.call(h); }
        }

        [Test(Description = "a split module with tensors of its own: the planner's entry for it places only its own tensors, its children's entries the rest; dispatched with disk, output bit-identical")]
        public void Planner_split_of_a_module_with_own_tensors_dispatches()
        {
            manual_seed(12);
            Sequential Net() => nn.Sequential(("first", nn.Linear(16, 16)), ("mid", new Scaled(16)));
            var resident = Net();
            using var x = rand(2, 16);
            using var want = resident.call(x);
            var model = Net();
            using (no_grad()) foreach (var (p, q) in model.parameters().Zip(resident.parameters())) p.copy_(q);
            var m = model.WithHooks();
            long linear = (16 * 16 + 16) * 4;
            var map = DeviceMap.infer_auto_device_map(m, new Dictionary<string, long> { ["cpu"] = 2 * linear + 64 + linear });
            TestContext.Out.WriteLine(string.Join(", ", map.Select(kv => $"{kv.Key}: {kv.Value}")));
            Assert.That(map.Keys, Does.Contain("mid").And.Contain("mid.a").And.Contain("mid.b"), "the planner split 'mid'");
            Assert.That(map.Values.Distinct().Count(), Is.EqualTo(2));
            using var store = WeightStore.Host(m.StateDict());
            using (var handle = m.dispatch_model(map, offloadStore: store))
            using (no_grad())
            using (var y = m.call(x))
            {
                Assert.That(y.eq(want).all().item<bool>());
                Assert.That(((AlignDevicesHook)m["mid"].model_hook!).place_submodules, Is.False, "'mid' places only its own tensors");
            }
            using var again = model.call(x);
            Assert.That(again.eq(want).all().item<bool>(), "removal restores");
        }

        [Test(Description = "Accelerate's offload_dir: the disk entries' weights are written to the folder (only theirs), read from it per call, bit-identical; a folder that already has index.json is used as it is; meta weights with no folder are refused with nothing written")]
        public void Offload_dir_is_written_then_used()
        {
            manual_seed(7);
            var model = nn.Sequential(("0", nn.Linear(8, 8)), ("1", nn.Linear(8, 8)), ("2", nn.Linear(8, 2)));
            var m = model.WithHooks();
            using var x = rand(2, 8);
            using var want = model.forward(x);
            var dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"th18-offload-dir-{Guid.NewGuid():N}");
            var map = new Dictionary<string, string> { ["0"] = "cpu", ["1"] = "disk", ["2"] = "disk" };
            try
            {
                using (var handle = m.dispatch_model(map, offload_dir: dir))
                using (no_grad())
                using (var y = m.call(x))
                {
                    Assert.That(y.eq(want).all().item<bool>());
                    Assert.That(handle.Offload!.Paths, Is.EqualTo(new[] { "1", "2" }));
                }
                var written = System.IO.Directory.GetFiles(dir).Select(System.IO.Path.GetFileName).OrderBy(f => f).ToList();
                Assert.That(written, Is.EqualTo(new[] { "1.bias.dat", "1.weight.dat", "2.bias.dat", "2.weight.dat", "index.json" }));

                // An existing folder is used as it is (Accelerate: when index.json is there): its bytes, not the model's.
                using (no_grad()) ((TorchSharp.Modules.Linear)model[1]).weight!.zero_();
                using (var handle = m.dispatch_model(map, offload_dir: dir))
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(y.eq(want).all().item<bool>(), "read from the folder");

                Sequential empty;
                using (EmptyWeights.Scope()) empty = nn.Sequential(("0", nn.Linear(8, 8)), ("1", nn.Linear(8, 8)));
                var missing = dir + "-new";
                var e = Assert.Throws<ArgumentException>(() => empty.WithHooks().dispatch_model(new Dictionary<string, string> { ["0"] = "meta", ["1"] = "disk" }, main_device: "cpu", offload_dir: missing))!;
                Assert.That(e.Message, Does.Contain("offload_dir").And.Contain("on meta (no data)"));
                Assert.That(System.IO.Directory.Exists(missing), Is.False, "nothing written");
                using var host = WeightStore.Host(m.StateDict());
                Assert.That(() => m.dispatch_model(map, offload_dir: dir, offloadStore: host), Throws.ArgumentException.With.Message.Contains("not both"));
            }
            finally { if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, recursive: true); }
        }

        [Test(Description = "libtorch's set_data (the CPU/CUDA path of a move, PyTorch's param.data = ...), bound directly: the Parameter object and its native tensor stay, the data, shape and storage change, requires_grad and training keep working; meta is refused before libtorch is called")]
        public void Set_data_binding_keeps_the_native_tensor()
        {
            var p = new Parameter(zeros(2, 3));
            var handle = p.Handle;
            using var data = arange(12, dtype: float32).reshape(3, 4);
            Assert.That(TensorData.Applies(p, data));
            TensorData.Set(p, data);
            Assert.That(p.Handle, Is.EqualTo(handle), "the same native tensor");
            Assert.That(p.shape, Is.EqualTo(new long[] { 3, 4 }));
            Assert.That(p.requires_grad, Is.True);
            Assert.That(p.eq(data).all().item<bool>());
            using (var loss = (p * 2).sum()) loss.backward();
            Assert.That(p.grad!.eq(full(3, 4, 2f)).all().item<bool>(), "gradients reach the moved data");

            using var meta = empty(3, 4, device: META);
            Assert.That(TensorData.Applies(p, meta), Is.False);
            Assert.That(() => TensorData.Set(p, meta), Throws.ArgumentException);
            using var ints = zeros(3, 4, dtype: int64);
            Assert.That(TensorData.Applies(p, ints), Is.False, "a tensor requiring grad needs floating-point data");
            Assert.That(p.eq(data).all().item<bool>(), "unchanged by the refusals");
        }

        [Test(Description = "DeviceMap.Build places by type (or any predicate): the selected subtrees, the rest on the default device, own tensors of a module above them as their own entry; dispatch_model takes the map as it is and runs bit-identical")]
        public void Map_built_from_a_type_rule_dispatches()
        {
            manual_seed(13);
            var model = nn.Sequential(("first", nn.Linear(16, 16)), ("mid", new Scaled(16)), ("act", nn.ReLU()), ("last", new Block(16)));
            var m = model.WithHooks();
            using var x = rand(2, 16);
            using var want = model.call(x);
            var map = DeviceMap.Build(m, p => p.Module is Linear && p.Path.StartsWith("mid.", StringComparison.Ordinal) || p.Module is Block ? "disk" : null);
            TestContext.Out.WriteLine(string.Join(", ", map.Select(kv => $"{kv.Key}: {kv.Value}")));
            Assert.That(map, Is.EqualTo(new Dictionary<string, string> { ["first"] = "cpu", ["mid"] = "cpu", ["mid.a"] = "disk", ["mid.b"] = "disk", ["last"] = "disk" }));
            Assert.That(DeviceMap.Build(m, p => null), Is.EqualTo(new Dictionary<string, string> { [""] = "cpu" }));
            using var store = WeightStore.Host(m.StateDict());
            using (var handle = m.dispatch_model(map, offloadStore: store))
            using (no_grad())
            using (var y = m.call(x))
            {
                Assert.That(handle.Offload!.Paths, Is.EquivalentTo(new[] { "mid.a", "mid.b", "last.a", "last.b" }));
                Assert.That(y.eq(want).all().item<bool>());
            }
        }

        private static IEnumerable<TestCaseData> Refusals()
        {
            TestCaseData Case(string name, Dictionary<string, string> map, string message, string? main = null, bool store = false)
                => new TestCaseData(map, main, store, message).SetName("Refused_" + name);
            yield return Case("unknown_path", new() { [""] = "cpu", ["block9"] = "cpu" }, "'block9' names no module");
            yield return Case("parameter_path", new() { ["a.weight"] = "cpu", ["b"] = "cpu", ["n"] = "cpu" }, "is a parameter or buffer, not a module: map its module 'a'");
            yield return Case("unplaced_module", new() { ["a"] = "cpu", ["b"] = "meta" }, "'n' (BatchNorm1d) has parameters or buffers");
            yield return Case("unknown_device", new() { ["a"] = "gpu", ["b"] = "cpu", ["n"] = "cpu" }, "'a' names the unknown device \"gpu\"");
            yield return Case("overlap_disagrees", new() { [""] = "cpu", ["b"] = "meta" }, "entries that overlap must agree");
            yield return Case("disk_without_store", new() { ["a"] = "disk", ["b"] = "cpu", ["n"] = "cpu" }, "no store was given");
            yield return Case("disk_on_meta_main", new() { ["a"] = "disk", ["b"] = "meta", ["n"] = "cpu" }, "materialised on the CPU only", store: true);
            yield return Case("disk_missing_from_store", new() { ["a"] = "cpu", ["b"] = "cpu", ["n"] = "disk" }, "not in the store", store: true);
            yield return Case("main_on_disk", new() { ["a"] = "cpu", ["b"] = "meta", ["n"] = "cpu" }, "main_device cannot be \"disk\"", main: "disk");
            yield return Case("cuda_absent", new() { ["a"] = "cuda:0", ["b"] = "cpu", ["n"] = "cpu" }, "CUDA is not available");
        }

        [TestCaseSource(nameof(Refusals))]
        public void Bad_maps_are_refused_before_anything_moves(Dictionary<string, string> map, string? main, bool store, string message)
        {
            if (message.StartsWith("CUDA") && cuda.is_available()) Assert.Ignore("CUDA is present here");
            var model = nn.Sequential(("a", nn.Linear(4, 4)), ("b", nn.Linear(4, 4)), ("n", nn.BatchNorm1d(4)));
            var m = model.WithHooks();
            var snapshot = new Snapshot(m);
            using var sd = m.StateDict();
            foreach (var k in sd.Keys.ToList()) if (k.StartsWith("n.")) sd.Remove(k);   // the store lacks n's tensors
            using var s = WeightStore.Host(sd);
            var e = Assert.Throws<ArgumentException>(() => m.dispatch_model(map, main, offloadStore: store ? s : null))!;
            TestContext.Out.WriteLine(e.Message);
            Assert.That(e.Message, Does.Contain(message));
            snapshot.AssertUnchanged();
        }

        [Test(Description = "a tensor shared by modules the map puts on different devices, and a meta (empty) parameter mapped to a device with data, are refused with nothing changed")]
        public void Tied_across_devices_and_meta_to_cpu_are_refused()
        {
            var a = nn.Linear(4, 4, hasBias: false);
            var b = nn.Linear(4, 4, hasBias: false);
            b.weight = a.weight;
            var m = nn.Sequential(("a", a), ("b", b)).WithHooks();
            var snapshot = new Snapshot(m);
            var e = Assert.Throws<ArgumentException>(() => m.dispatch_model(new Dictionary<string, string> { ["a"] = "cpu", ["b"] = "meta" }))!;
            Assert.That(e.Message, Does.Contain("'b.weight' is the same tensor as 'a.weight' (tied)"));
            snapshot.AssertUnchanged();

            Sequential empty;
            using (EmptyWeights.Scope()) empty = nn.Sequential(("a", nn.Linear(4, 4)), ("b", nn.Linear(4, 4)));
            var me = empty.WithHooks();
            var emptySnapshot = new Snapshot(me);
            var e2 = Assert.Throws<ArgumentException>(() => me.dispatch_model(new Dictionary<string, string> { ["a"] = "cpu", ["b"] = "meta" }))!;
            Assert.That(e2.Message, Does.Contain("'a.weight' is on meta (no data) and cannot be placed on cpu"));
            emptySnapshot.AssertUnchanged();
        }

        [Test(Description = "AlignDevicesHook alone: placing on attach keeps objects; a tensor that cannot move rolls back the ones moved and the hook is not attached")]
        public void AlignDevicesHook_alone_places_and_rolls_back()
        {
            var model = nn.Sequential(("a", nn.Linear(4, 4)));
            var m = model.WithHooks();
            var w = ((Linear)model[0]).weight!;
            using (m.add_hook_to_module(new AlignDevicesHook("meta", place_submodules: true)))
                Assert.That(w.device_type, Is.EqualTo(DeviceType.META));
            Assert.That(w.device_type, Is.EqualTo(DeviceType.CPU));

            Sequential mixed;
            using (EmptyWeights.Scope()) mixed = nn.Sequential(("a", nn.Linear(4, 4)));
            var mm = mixed.WithHooks();
            Assert.Throws<InvalidOperationException>(() => mm.add_hook_to_module(new AlignDevicesHook("cpu", place_submodules: true)));
            Assert.That(mm.Root.model_hook, Is.Null);
            Assert.That(() => new AlignDevicesHook("tpu"), Throws.ArgumentException.With.Message.Contains("\"tpu\""));
        }
    }
}
