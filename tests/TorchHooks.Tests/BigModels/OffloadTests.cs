using System;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.BigModels
{
    /// <summary>Weight offload on the call path (public ModelHook seam): materialised on the way in, released on the way out, prefetch, refusals.</summary>
    [NonParallelizable]
    public class OffloadTests
    {
        private string _path = "";

        [SetUp]
        public void Save()
        {
            _path = Path.Combine(Path.GetTempPath(), $"th18-offload-{Guid.NewGuid():N}.bin");
            manual_seed(7);
            Model().save(_path);
        }

        private readonly System.Collections.Generic.List<IDisposable> _owned = new();

        [TearDown]
        public void Delete()
        {
            foreach (var d in _owned) d.Dispose();
            _owned.Clear();
            File.Delete(_path);
        }

        /// <summary>The largest offloaded module's bytes (fc2: 32×32 weights and 32 biases, float32): prefetch budgets are multiples of it.</summary>
        private const long Fc2Bytes = (32 * 32 + 32) * 4;

        internal static Sequential Model() => nn.Sequential(("fc1", nn.Linear(16, 32)), ("norm", nn.LayerNorm(32)), ("fc2", nn.Linear(32, 32)), ("fc3", nn.Linear(32, 8)));

        private Sequential Resident()
        {
            var m = Model();
            m.load(_path);
            return m;
        }

        private static Tensor Input() { manual_seed(3); return randn(4, 16); }

        /// <summary>The input, the resident model's output for it (both disposed after the test), and an empty (meta) copy of the model, wrapped.</summary>
        private (Tensor X, Tensor Want, HookedModule<Tensor, Tensor> Empty) Setup()
        {
            var x = Input();
            var want = Resident().call(x);
            _owned.Add(x);
            _owned.Add(want);
            Sequential empty;
            using (EmptyWeights.Scope()) empty = Model();
            return (x, want, empty.WithHooks());
        }

        private sealed class Cleanup : IDisposable
        {
            private readonly Action _action;
            public Cleanup(Action action) { _action = action; }
            public void Dispose() => _action();
        }

        private static bool BitEqual(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

        [Test(Description = "Accelerate test_disk_offload: an empty model offloaded to disk runs bit-identical to the resident model; between calls no offloaded parameter holds storage")]
        public void Disk_offload_of_an_empty_model_is_bit_identical()
        {
            var (x, want, m) = Setup();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var offload = m.Offload(store);
            Assert.That(offload.Paths, Is.EqualTo(new[] { "fc1", "norm", "fc2", "fc3" }));
            Assert.That(offload.AllReleased);
            bool sawWeights = false;
            using var h = m["fc2"].register_forward_hook((mod, input, y) => { sawWeights = ((Linear)mod).weight!.numel() > 0; return null; });
            for (int pass = 0; pass < 3; pass++)
            {
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(BitEqual(y, want), $"pass {pass}: bit-identical to resident");
                Assert.That(offload.AllReleased, $"pass {pass}: released after the call");
            }
            Assert.That(sawWeights, Is.False, "forward hooks run after post_forward released the weights, as Accelerate's hooks run inside forward");
        }

        [Test(Description = "with everything else on the call path: forward pre-hooks and forward hooks see what they see on the resident model, the activation cache holds the same activations, the summary counts the same parameters (offloaded weights counted from the store's shapes)")]
        public void Offloaded_model_works_with_hooks_cache_and_summary()
        {
            var x = Input();
            using var _x = x;
            var resident = Resident().WithHooks();
            var (_, _, m) = Setup();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var offload = m.Offload(store, new OffloadOptions { PrefetchBytes = 2 * Fc2Bytes });

            System.Collections.Generic.List<double[]> Seen(HookedModule<Tensor, Tensor> model)
            {
                var seen = new System.Collections.Generic.List<double[]>();
                using var pre = ModuleHooks.register_module_forward_pre_hook((mod, input) => { seen.Add(TensorAssert.Values(input)); return null; });
                using var post = ModuleHooks.register_module_forward_hook((mod, input, y) => { seen.Add(TensorAssert.Values(y)); return null; });
                using (no_grad()) model.call(x).Dispose();
                return seen;
            }
            var want = Seen(resident);
            for (int pass = 0; pass < 2; pass++)
            {
                var got = Seen(m);
                Assert.That(got, Has.Count.EqualTo(want.Count));
                for (int i = 0; i < want.Count; i++) Assert.That(got[i], Is.EqualTo(want[i]), $"pass {pass}, hook call {i}");
            }

            using var inference = no_grad();   // offloaded weights are for inference
            var (yr, cacheR) = resident.RunWithCache(x);
            var (yo, cacheO) = m.RunWithCache(x);
            using (yr) using (yo) using (cacheR) using (cacheO)
            {
                Assert.That(cacheO.Keys, Is.EquivalentTo(cacheR.Keys));
                foreach (var key in cacheR.Keys) Assert.That(TensorAssert.Values(cacheO[key]), Is.EqualTo(TensorAssert.Values(cacheR[key])), key);
            }
            Assert.That(offload.AllReleased, "released after the cached run");

            var sr = resident.Summary(x);
            var so = m.Summary(x);
            Assert.That(so.TotalParams, Is.EqualTo(sr.TotalParams), "offloaded parameters counted");
            Assert.That(so.Rows.Select(r => r.Params), Is.EqualTo(sr.Rows.Select(r => r.Params)));
        }

        [Test(Description = "offloading a resident model keeps its Parameter objects; disposing the handle makes them resident with their values, and an optimizer built before still trains them")]
        public void Parameter_objects_kept_and_restored()
        {
            var model = Resident();
            var m = model.WithHooks();
            var parameters = model.parameters().ToArray();
            var before = parameters.Select(p => p.detach().clone()).ToArray();
            var optimizer = optim.SGD(model.parameters(), 0.1);
            using (var store = WeightStore.Disk(Checkpoint.Open(_path)))
            {
                var offload = m.Offload(store);
                Assert.That(model.parameters().Zip(parameters).All(p => ReferenceEquals(p.First, p.Second)));
                Assert.That(parameters.All(p => p.numel() == 0), "released");
                offload.Dispose();
            }
            Assert.That(model.parameters().Zip(parameters).All(p => ReferenceEquals(p.First, p.Second)));
            Assert.That(parameters.Zip(before).All(p => BitEqual(p.First.detach(), p.Second)), "resident again with their values");
            Assert.That(parameters.All(p => p.requires_grad));
            using var x = Input();
            optimizer.zero_grad();
            m.call(x).sum().backward();
            optimizer.step();
            Assert.That(!BitEqual(parameters[0].detach(), before[0]), "the optimizer built before the offload updated the parameter");
            foreach (var t in before) t.Dispose();
        }

        [Test(Description = "prefetch: later passes are served from reads made ahead on the background thread within the byte budget; outputs bit-identical; no tensor left behind")]
        public void Prefetch_serves_later_passes_within_budget()
        {
            var (x, want, m) = Setup();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            var offload = m.Offload(store, new OffloadOptions { PrefetchBytes = 2 * Fc2Bytes, WaitForReadsAhead = true });   // deterministic under load: calls wait for the thread
            using (no_grad()) m.call(x).Dispose();   // learn the order
            GC.Collect(); GC.WaitForPendingFinalizers();
            long tensors = Tensor.TotalCount;
            for (int pass = 0; pass < 5; pass++)
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(BitEqual(y, want), $"pass {pass}");
            TestContext.Out.WriteLine($"prefetch: {offload.PrefetchHits} hits, {offload.PrefetchWaits} waits, {offload.PrefetchMisses} misses over 5 passes of {offload.Paths.Count} modules");
            Assert.That(offload.PrefetchHits + offload.PrefetchWaits + offload.PrefetchMisses, Is.GreaterThanOrEqualTo(5 * 3), "every module after the first of each pass had a read ahead queued");
            Assert.That(offload.PrefetchHits + offload.PrefetchWaits, Is.GreaterThanOrEqualTo(5 * 3), "the prefetch thread read every one of them");
            Assert.That(offload.PrefetchMisses, Is.Zero, "no call took its read back (WaitForReadsAhead)");
            offload.Dispose();
            GC.Collect(); GC.WaitForPendingFinalizers();
            Assert.That(Tensor.TotalCount, Is.LessThanOrEqualTo(tensors + 8), "live tensors flat (the 8 are the restored parameters)");
        }

        [Test(Description = "prefetch: a call whose read ahead the thread has not started reads its weights itself (PrefetchMisses) instead of waiting for the thread; outputs bit-identical; the thread skips what was taken back; no tensor left behind")]
        public void A_call_takes_back_a_read_ahead_the_thread_has_not_started()
        {
            var (x, want, m) = Setup();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var gate = new System.Threading.ManualResetEventSlim(false);   // the prefetch thread is held before every read
            var offload = m.Offload(store, new OffloadOptions { PrefetchBytes = 2 * Fc2Bytes, PrefetchGate = gate });
            using (no_grad()) m.call(x).Dispose();   // learn the order
            GC.Collect(); GC.WaitForPendingFinalizers();
            long tensors = Tensor.TotalCount;
            for (int pass = 0; pass < 3; pass++)
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(BitEqual(y, want), $"pass {pass}");
            Assert.That(offload.PrefetchMisses, Is.GreaterThanOrEqualTo(3 * 3), "every module after the first of each pass took its read back");
            Assert.That(offload.PrefetchHits + offload.PrefetchWaits, Is.Zero, "the held thread read nothing");
            gate.Set();   // the thread now finds every queued read taken back (or reads the ones queued for the next pass)
            offload.Dispose();
            GC.Collect(); GC.WaitForPendingFinalizers();
            Assert.That(Tensor.TotalCount, Is.LessThanOrEqualTo(tensors + 8), "live tensors flat (the 8 are the restored parameters)");
        }

        [Test(Description = "training with offloaded weights is refused naming the module; nothing is left materialised")]
        public void Training_is_refused_naming_the_module()
        {
            var model = Resident();
            var m = model.WithHooks();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var offload = m.Offload(store);
            using var x = Input();
            var e = Assert.Throws<InvalidOperationException>(() => m.call(x))!;
            Assert.That(e.Message, Does.Contain("'fc1'").And.Contain("inference only").And.Contain("no_grad"));
            Assert.That(offload.AllReleased);
        }

        [Test(Description = "a call that fails inside forward releases the weights (forward_failed)")]
        public void Failed_call_releases_the_weights()
        {
            var model = Resident();
            var m = model.WithHooks();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var offload = m.Offload(store);
            using var wrong = randn(4, 5);
            using (no_grad()) Assert.That(() => m.call(wrong), Throws.Exception);
            Assert.That(offload.AllReleased);
            using var x = Input();
            using (no_grad()) m.call(x).Dispose();   // and the model still runs
        }

        [Test(Description = "autocast: an offloaded module's lower-precision casts are never cached, so a cast of released or replaced weights is never served (host store: pooled buffers; disk offload folder: mapped weights)")]
        public void Autocast_never_serves_a_cast_of_released_weights([Values("host", "mapped")] string kind)
        {
            var a = Resident();
            var b = Model();   // other weights
            using var x = Input();
            Tensor wantB;
            using (no_grad()) using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) wantB = b.call(x);
            var m = a.WithHooks();
            var folders = new System.Collections.Generic.List<string>();
            WeightStore Store(Sequential model)
            {
                if (kind == "host") return WeightStore.Host(model.WithHooks().StateDict());
                folders.Add(Folder(model));
                return WeightStore.Disk(Checkpoint.Open(folders[^1]));
            }
            using var cleanup = new Cleanup(() => folders.ForEach(f => Directory.Delete(f, recursive: true)));
            using var storeA = Store(a);
            using var storeB = Store(b);
            using (no_grad())
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                var first = m.Offload(storeA);
                m.call(x).Dispose();
                first.Dispose();
                using var second = m.Offload(storeB);
                using var y = m.call(x);
                Assert.That(BitEqual(y, wantB), "the second store's weights, not a cached cast of the first's");
            }
            wantB.Dispose();
        }

        [Test(Description = "bad input: a parameter missing from the store, a shape mismatch, a prefetch budget below the largest module: refused with the list, nothing changed")]
        public void Bad_input_refused_before_anything_moves()
        {
            var model = nn.Sequential(("fc1", nn.Linear(16, 32)), ("norm", nn.LayerNorm(32)), ("fc2", nn.Linear(32, 16)), ("extra", nn.Linear(8, 8)));
            var m = model.WithHooks();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            var e = Assert.Throws<ArgumentException>(() => m.Offload(store))!;
            Assert.That(e.Message, Does.Contain("'fc2.weight' is [32, 32] in the store, [16, 32] in the model").And.Contain("'extra.weight' is not in the store").And.Contain("nothing was changed"));
            Assert.That(model.parameters().All(p => p.numel() > 0), "nothing released");

            var ok = Resident().WithHooks();
            var budget = Assert.Throws<ArgumentException>(() => ok.Offload(store, new OffloadOptions { PrefetchBytes = 100 }))!;
            Assert.That(budget.Message, Does.Contain("below the largest offloaded module"));
            Assert.That(ok.Unwrap().parameters().All(p => p.numel() > 0), "nothing released");
        }

        [Test(Description = "a store folder writable by other users is refused")]
        [Platform("Linux")]
        public void Store_writable_by_others_refused()
        {
            if (!OperatingSystem.IsLinux()) return;
            var dir = Path.Combine(Path.GetTempPath(), $"th18-shared-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                var file = Path.Combine(dir, "model.bin");
                File.Copy(_path, file);
                File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherWrite | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
                using var checkpoint = Checkpoint.Open(file);
                var e = Assert.Throws<UnauthorizedAccessException>(() => WeightStore.Disk(checkpoint))!;
                Assert.That(e.Message, Does.Contain(dir).And.Contain("chmod go-w"));
            }
            finally { Directory.Delete(dir, recursive: true); }
        }

        [Test(Description = "nothing offloaded: no hook attached, the call path's fast path untouched")]
        public void Nothing_offloaded_leaves_modules_inactive()
        {
            var model = Resident();
            var m = model.WithHooks();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            var offload = m.Offload(store);
            Assert.That(m["fc1"].IsActive, Is.True);
            offload.Dispose();
            Assert.That(m.Paths.Select(p => m[p]).All(p => !p.IsActive), "no concern active once the offload is removed");
        }
        /// <summary>The resident model's weights written as Accelerate's offload folder (aligned .dat files: mapped) under a fresh folder.</summary>
        private string Folder(Sequential resident)
        {
            var dir = Path.Combine(Path.GetTempPath(), $"th18-mapped-{Guid.NewGuid():N}");
            using var sd = resident.WithHooks().StateDict();
            OffloadFolder.Write(sd, dir);
            return dir;
        }

        [Test(Description = "mapped (offload folder, no copy) and copied (pooled buffers) materialisation, with and without prefetch: bit-identical to resident over passes; mapped uses no pooled buffer; Parameter objects kept over the passes")]
        public void Mapped_and_copied_weights_are_bit_identical([Values(false, true)] bool map, [Values(0L, 2 * Fc2Bytes)] long prefetch)
        {
            var (x, want, m) = Setup();
            var dir = Folder(Resident());
            try
            {
                using var store = WeightStore.Disk(Checkpoint.Open(dir));
                using var offload = m.Offload(store, new OffloadOptions { MapWeights = map, PrefetchBytes = prefetch });
                var parameters = m.Unwrap().parameters().ToList();   // the empty model's meta parameters were replaced by storage-less CPU ones
                Assert.That(offload.BufferPoolBytes, Is.EqualTo(prefetch + Fc2Bytes), "the pool's capacity: the prefetch budget plus the largest module");
                for (int pass = 0; pass < 4; pass++)
                {
                    using (no_grad())
                    using (var y = m.call(x))
                        Assert.That(BitEqual(y, want), $"pass {pass}");
                    Assert.That(offload.AllReleased, $"pass {pass}: released");
                }
                var (allocated, reused) = offload.BufferPoolCounts;
                TestContext.Out.WriteLine($"map {map}, prefetch {prefetch}: pool allocated {allocated}, reused {reused}; prefetch hits {offload.PrefetchHits}, waits {offload.PrefetchWaits}, misses {offload.PrefetchMisses}");
                if (map) Assert.That(allocated + reused, Is.EqualTo(0), "mapped weights need no buffer");
                else Assert.That(allocated + reused, prefetch == 0 ? Is.EqualTo(4 * 8) : Is.GreaterThanOrEqualTo(4 * 8), "every copied tensor went through the pool (reads ahead for the next pass too; differently shaped modules evict each other's buffers: the pool keeps its capacity)");
                Assert.That(m.Unwrap().parameters().Zip(parameters, ReferenceEquals).All(same => same), "the same Parameter objects over the passes");
            }
            finally { Directory.Delete(dir, recursive: true); }
        }

        [Test(Description = "the buffer pool: a model of same-shaped layers allocates one buffer per tensor shape and reuses them every pass; live tensors flat; the pool is freed with the handle")]
        public void Buffer_pool_reuses_buffers_across_modules_and_passes()
        {
            manual_seed(5);
            var resident = nn.Sequential(Enumerable.Range(0, 6).Select(i => ($"l{i}", (nn.Module<Tensor, Tensor>)nn.Linear(32, 32))).ToArray());
            using var x = randn(2, 32);
            using var want = resident.call(x);
            var m = resident.WithHooks();
            using var store = WeightStore.Host(m.StateDict());
            var offload = m.Offload(store);
            using (no_grad()) m.call(x).Dispose();
            GC.Collect(); GC.WaitForPendingFinalizers();
            long tensors = Tensor.TotalCount;
            for (int pass = 0; pass < 5; pass++)
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(BitEqual(y, want), $"pass {pass}");
            var (allocated, reused) = offload.BufferPoolCounts;
            Assert.That(allocated, Is.EqualTo(2), "one weight and one bias buffer, allocated once");
            Assert.That(reused, Is.EqualTo(6 * 6 * 2 - 2), "every other materialisation reused them");
            GC.Collect(); GC.WaitForPendingFinalizers();
            Assert.That(Tensor.TotalCount, Is.LessThanOrEqualTo(tensors), "live tensors flat over the passes");
            offload.Dispose();
            using (no_grad()) using (var y = m.call(x)) Assert.That(BitEqual(y, want), "resident again after the handle is disposed");
        }

        [Test(Description = "tracing: a traced offloaded forward with prefetch has offload.load spans inside their module's call, offload.wait inside a load, offload.prefetch on the prefetch thread's own track; Chrome trace category offload with path and bytes; no spans without a tracer")]
        public void Traced_offload_shows_load_wait_and_prefetch_spans()
        {
            var (x, want, m) = Setup();
            using var store = WeightStore.Disk(Checkpoint.Open(_path));
            using var offload = m.Offload(store, new OffloadOptions { PrefetchBytes = 4 * Fc2Bytes, WaitForReadsAhead = true });   // calls wait for the thread: deterministic under load
            using (no_grad()) m.call(x).Dispose();   // learn the order (no tracer: nothing is recorded anywhere)
            Assert.That(SpanEvents.Requested, Is.False, "no span observer without a tracer");
            ModuleTracer trace;
            int passes = 0;
            using (trace = m.Trace())
            {
                Assert.That(SpanEvents.Requested, Is.True, "a tracer subscribes to the span route");
                // At least 3 passes, and until the prefetch thread has done a read ahead (with WaitForReadsAhead it does from the
                // first traced pass on; without it, a call on a loaded machine may take back every read ahead, PrefetchMisses).
                while (passes < 3 || passes < 200 && !trace.Spans.Any(s => s.Name == "offload.prefetch"))
                {
                    using (no_grad()) m.call(x).Dispose();
                    passes++;
                }
            }
            Assert.That(SpanEvents.Requested, Is.False, "unsubscribed when the tracer is disposed");
            var spans = trace.Spans;
            var calls = trace.Calls;
            int caller = calls.First(c => c.Path == "fc1").ThreadId;
            var loads = spans.Where(s => s.Name == "offload.load").ToList();
            Assert.That(loads.Select(s => s.Path).Distinct(), Is.EquivalentTo(new[] { "fc1", "norm", "fc2", "fc3" }));
            Assert.That(loads, Has.Count.EqualTo(passes * 4), "one load per offloaded module call");
            foreach (var load in loads)
            {
                Assert.That(load.ThreadId, Is.EqualTo(caller), "loads run on the calling thread");
                Assert.That(load.Bytes, Is.EqualTo(load.Path == "norm" ? 2 * 32 * 4 : load.Path == "fc1" ? (16 * 32 + 32) * 4 : load.Path == "fc2" ? (32 * 32 + 32) * 4 : (32 * 8 + 8) * 4));
                Assert.That(calls.Any(c => c.Path == load.Path && c.ThreadId == caller && c.StartTimestamp <= load.StartTimestamp && load.EndTimestamp <= c.EndTimestamp),
                            $"the load of '{load.Path}' lies inside a call of its module");
            }
            foreach (var wait in spans.Where(s => s.Name == "offload.wait"))
                Assert.That(loads.Any(l => l.Path == wait.Path && l.StartTimestamp <= wait.StartTimestamp && wait.EndTimestamp <= l.EndTimestamp), "a wait lies inside its load");
            var prefetches = spans.Where(s => s.Name == "offload.prefetch").ToList();
            Assert.That(prefetches.Count + offload.PrefetchMisses, Is.GreaterThanOrEqualTo(passes * 4 - 1), "every load after the first traced one was read ahead (or taken back by its call before the prefetch thread reached it)");
            Assert.That(prefetches, Is.Not.Empty);
            Assert.That(prefetches.Select(p => p.ThreadId).Distinct().Single(), Is.Not.EqualTo(caller), "reads ahead on their own thread");
            Assert.That(prefetches[0].ThreadName, Is.EqualTo("TorchHooks offload prefetch"));

            using var json = System.Text.Json.JsonDocument.Parse(trace.ToChromeTrace());
            var events = json.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() == "X").ToList();
            var offloadEvents = events.Where(e => e.GetProperty("cat").GetString() == "offload").ToList();
            Assert.That(offloadEvents.Select(e => e.GetProperty("name").GetString()).Distinct(), Is.SupersetOf(new[] { "offload.load", "offload.prefetch" }));
            Assert.That(offloadEvents.All(e => e.GetProperty("args").TryGetProperty("path", out _) && e.GetProperty("args").GetProperty("bytes").GetInt64() > 0));
            var prefetchTid = offloadEvents.First(e => e.GetProperty("name").GetString() == "offload.prefetch").GetProperty("tid").GetInt32();
            Assert.That(events.Where(e => e.GetProperty("tid").GetInt32() == prefetchTid).All(e => e.GetProperty("cat").GetString() == "offload"), "the prefetch track holds only reads ahead");
            Assert.That(json.RootElement.GetProperty("traceEvents").EnumerateArray().Any(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("tid").GetInt32() == prefetchTid
                        && e.GetProperty("args").TryGetProperty("name", out var n) && n.GetString() == "TorchHooks offload prefetch"), "the prefetch track is named");
            Assert.That(offloadEvents.Any(e => e.TryGetProperty("args", out var a) && a.TryGetProperty("clamped", out _)), Is.False, "offload spans nest without clamping");

            var timeline = trace.ToTimeline();
            Assert.That(timeline.SpanCount, Is.EqualTo(spans.Count), "the timeline picture draws every span");
            Assert.That(timeline.ToSvg(), Does.Contain("TorchHooks offload prefetch").And.Contain("offload.load"), "the prefetch thread's lane, and the loads");
        }
    }
}

namespace TorchHooks.Tests.BigModels
{
    /// <summary>Writing Accelerate's offload folder (offload_state_dict's layout) and offloading to it.</summary>
    public class OffloadFolderWriterTests
    {
        [Test(Description = "Accelerate test_offload_state_dict: the folder written here has the same .dat bytes and index entries as the one make_checkpoints.py wrote by Accelerate's layout; offloading to it runs bit-identical")]
        public void Written_folder_matches_the_reference_layout_and_offloads()
        {
            var dir = Path.Combine(Path.GetTempPath(), $"th18-folder-{Guid.NewGuid():N}");
            try
            {
                var model = StreamingLoadTests.SmallModel();
                var m = model.WithHooks();
                using (var golden = Checkpoint.Open(StreamingLoadTests.Golden("small.safetensors"))) m.load_state_dict(golden);
                using (var sd = m.StateDict()) OffloadFolder.Write(sd, dir);
                var reference = StreamingLoadTests.Golden("offload");
                foreach (var file in Directory.GetFiles(reference, "*.dat"))
                    Assert.That(File.ReadAllBytes(Path.Combine(dir, Path.GetFileName(file))), Is.EqualTo(File.ReadAllBytes(file)), Path.GetFileName(file));
                using (var mine = Checkpoint.Open(dir))
                using (var theirs = Checkpoint.Open(reference))
                    foreach (var t in theirs.Tensors)
                        Assert.That((mine[t.Name].dtype, mine[t.Name].shape), Is.EqualTo((t.dtype, t.shape)), t.Name);
                if (OperatingSystem.IsLinux()) Assert.That(File.GetUnixFileMode(dir) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite), Is.EqualTo(UnixFileMode.None));

                model.eval();
                using var x = ones(2, 4);
                using var want = model.call(x);
                using var store = WeightStore.Disk(Checkpoint.Open(dir));
                using var offload = m.Offload(store);
                using (no_grad())
                using (var y = m.call(x))
                    Assert.That(y.eq(want).all().item<bool>(), "bit-identical from the written folder");
            }
            finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        }
    }
}
