using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.BigModels
{
    /// <summary>
    /// Streaming loads from files written by an independent writer (Goldens/bigmodels/make_checkpoints.py: safetensors byte by
    /// byte, Accelerate's offload folder by its layout, values and model output from PyTorch 1.13.1), TorchSharp's Module.save
    /// format, PyTorch's state-dict hooks and strict reporting, and bad input refused before any weight moves.
    /// </summary>
    public class StreamingLoadTests
    {
        internal static string Golden(params string[] parts) => Path.Combine(new[] { AppContext.BaseDirectory, "Goldens", "bigmodels" }.Concat(parts).ToArray());

        private static JsonElement Expected => s_expected ??= JsonDocument.Parse(File.ReadAllBytes(Golden("expected.json"))).RootElement;
        private static JsonElement? s_expected;

        /// <summary>The model make_checkpoints.py builds: Sequential(fc1 Linear(4,3), norm LayerNorm(3), bn BatchNorm1d(3), fc2 Linear(3,2)).</summary>
        internal static Sequential SmallModel() => nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("fc2", nn.Linear(3, 2)));

        private static double[] Values(Tensor t)
        {
            using var d = t.detach().to(ScalarType.Float64).cpu().reshape(-1);
            return d.data<double>().ToArray();
        }

        private static double[] ExpectedValues(JsonElement entry) => entry.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();

        private static void AssertModelMatchesPyTorch(nn.Module<Tensor, Tensor> model)
        {
            var golden = Expected.GetProperty("model");
            foreach (var (key, t) in model.state_dict())
            {
                Assert.That(t.device_type, Is.EqualTo(DeviceType.CPU), key);
                Assert.That(t.shape, Is.EqualTo(golden.GetProperty(key).GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()).ToArray()), key);
                Assert.That(Values(t), Is.EqualTo(ExpectedValues(golden.GetProperty(key))), key);
            }
            model.eval();
            var input = Expected.GetProperty("input").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
            using var x = tensor(input).reshape(2, 4);
            using var y = model.call(x);
            var want = Expected.GetProperty("output").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.That(Values(y), Is.EqualTo(want).Within(1e-6), "output equals PyTorch's");
        }

        [Test(Description = "safetensors file by an independent writer into a resident model: values and output equal PyTorch's, Parameter objects kept (an optimizer built before keeps working)")]
        public void Safetensors_into_a_resident_model_keeps_parameter_objects()
        {
            var model = SmallModel();
            var m = model.WithHooks();
            var before = model.parameters().ToArray();
            using var checkpoint = Checkpoint.Open(Golden("small.safetensors"));
            Assert.That(checkpoint.Format, Is.EqualTo("safetensors"));
            Assert.That(checkpoint.Metadata["writer"], Is.EqualTo("make_checkpoints.py"));
            var keys = m.load_state_dict(checkpoint);
            Assert.That(keys.missing_keys, Is.Empty);
            Assert.That(keys.unexpected_keys, Is.Empty);
            Assert.That(model.parameters().Zip(before).All(p => ReferenceEquals(p.First, p.Second)), "same Parameter objects");
            AssertModelMatchesPyTorch(model);
        }

        [Test(Description = "safetensors into an empty (meta) model: every tensor on the CPU with PyTorch's values; the module fields point at the new parameters")]
        public void Safetensors_into_an_empty_model()
        {
            Sequential model;
            using (EmptyWeights.Scope()) model = SmallModel();
            var m = model.WithHooks();
            using (var checkpoint = Checkpoint.Open(Golden("small.safetensors"))) m.load_state_dict(checkpoint);
            var fc1 = (Linear)model[0];
            Assert.That(ReferenceEquals(fc1.weight, model.parameters().First()), "the Linear's field and its registration agree");
            Assert.That(model.parameters().All(p => p.requires_grad), "requires_grad kept");
            AssertModelMatchesPyTorch(model);
        }

        [Test(Description = "Hugging Face's sharded layout (model.safetensors.index.json + two shards) and Accelerate's offload folder (index.json + .dat) load like the single file")]
        public void Sharded_index_and_offload_folder_load([Values("sharded", "offload")] string folder)
        {
            Sequential model;
            using (EmptyWeights.Scope()) model = SmallModel();
            using var checkpoint = Checkpoint.Open(Golden(folder));
            Assert.That(checkpoint.Format, Is.EqualTo(folder == "sharded" ? "safetensors-sharded" : "offload-folder"));
            model.WithHooks().load_state_dict(checkpoint);
            AssertModelMatchesPyTorch(model);
        }

        [Test(Description = "every safetensors dtype (bf16, f16, f64, i64, i32, i16, i8, u8, bool, 0-d, empty) reads back the values PyTorch wrote")]
        public void Every_dtype_reads_back()
        {
            using var checkpoint = Checkpoint.Open(Golden("dtypes.safetensors"));
            foreach (var entry in Expected.GetProperty("dtypes").EnumerateObject())
            {
                using var t = checkpoint.Read(entry.Name);
                Assert.That(SafeTensorsFormat.DTypes[entry.Value.GetProperty("dtype").GetString()!], Is.EqualTo(t.dtype), entry.Name);
                Assert.That(t.shape, Is.EqualTo(entry.Value.GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()).ToArray()), entry.Name);
                using var asLong = t.dtype == ScalarType.Bool ? t.to(ScalarType.Int64) : t.alias();
                Assert.That(Values(asLong), Is.EqualTo(ExpectedValues(entry.Value)), entry.Name);
            }
        }

        [Test(Description = "TorchSharp's own Module.save format streams into an empty model: bit-equal to the saved model")]
        public void TorchSharp_save_format_streams_into_an_empty_model()
        {
            var path = Path.Combine(Path.GetTempPath(), $"th18-{Guid.NewGuid():N}.bin");
            try
            {
                var source = SmallModel();
                using (no_grad()) foreach (var b in source.buffers()) if (b.is_floating_point()) b.uniform_(0.5, 1.5);
                source.save(path);
                Sequential model;
                using (EmptyWeights.Scope()) model = SmallModel();
                using (var checkpoint = Checkpoint.Open(path))
                {
                    Assert.That(checkpoint.Format, Is.EqualTo("torchsharp"));
                    model.WithHooks().load_state_dict(checkpoint);
                }
                var want = source.state_dict();
                foreach (var (key, t) in model.state_dict())
                    Assert.That(Values(t), Is.EqualTo(Values(want[key])), key);
            }
            finally { File.Delete(path); }
        }

        [Test(Description = "PyTorch test_load_state_dict_pre_hook / test_load_state_dict_post_hook: hooks per module with PyTorch's arguments, in PyTorch's order per kind; a pre-hook renames keys without reading data")]
        public void Load_hooks_run_in_PyTorch_order_and_can_rename_keys()
        {
            var model = nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("extra", nn.Linear(2, 2)));
            var m = model.WithHooks();
            var events = new List<string>();
            var handles = new List<RemovableHandle>();
            foreach (var path in m.Paths)
            {
                handles.Add(m[path].register_load_state_dict_pre_hook((mod, sd, prefix, md, strict, missing, unexpected, errors) => events.Add($"load_pre|{path}|{prefix}|{strict}")));
                handles.Add(m[path].register_load_state_dict_post_hook((mod, keys) => events.Add($"load_post|{path}")));
            }
            using var checkpoint = Checkpoint.Open(Golden("small.safetensors"));
            // The offload folder's index keeps the state dict's key order, as PyTorch's dict has it (safetensors: data order).
            using var ordered = Checkpoint.Open(Golden("offload"));
            var result = m.load_state_dict(ordered, strict: false);

            var golden = Expected.GetProperty("incompatible");
            Assert.That(result.missing_keys, Is.EqualTo(golden.GetProperty("missing_keys").EnumerateArray().Select(v => v.GetString()).ToArray()));
            Assert.That(result.unexpected_keys, Is.EqualTo(golden.GetProperty("unexpected_keys").EnumerateArray().Select(v => v.GetString()).ToArray()));
            var goldenEvents = golden.GetProperty("load_events").EnumerateArray()
                .Select(e => string.Join("|", e.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.True ? "True" : v.GetString()))).ToList();
            // Each kind in PyTorch's order; PyTorch interleaves them (a module's post-hooks right after its subtree), here all
            // post-hooks run after the load (docs/offload.md).
            Assert.That(events.Where(e => e.StartsWith("load_pre")), Is.EqualTo(goldenEvents.Where(e => e.StartsWith("load_pre"))));
            Assert.That(events.Where(e => e.StartsWith("load_post")), Is.EqualTo(goldenEvents.Where(e => e.StartsWith("load_post"))));
            foreach (var h in handles) h.Dispose();

            // A pre-hook on the root renames fc2.* to extra.* (a Linear(3,2) stored, a Linear(2,2) here: rename only the bias).
            var renamed = nn.Sequential(("first", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("fc2", nn.Linear(3, 2)));
            var r = renamed.WithHooks();
            bool read = false;
            using var pre = r.Root.register_load_state_dict_pre_hook((mod, sd, prefix, md, strict, missing, unexpected, errors) =>
            {
                foreach (var key in sd.Keys.Where(k => k.StartsWith("fc1.")).ToList()) sd.Rename(key, "first." + key.Substring(4));
                read = sd.Stored("first.weight") is null;
            });
            var ok = r.load_state_dict(checkpoint);
            Assert.That(read, Is.False, "renaming read no data");
            Assert.That(ok.missing_keys.Concat(ok.unexpected_keys), Is.Empty);
            Assert.That(Values(((Linear)renamed[0]).weight!), Is.EqualTo(ExpectedValues(Expected.GetProperty("model").GetProperty("fc1.weight"))));
        }

        [Test(Description = "PyTorch test_load_state_dict strict: missing/unexpected keys and the message as PyTorch returns them; nothing is written")]
        public void Strict_refuses_with_PyTorchs_message_before_any_weight_moves()
        {
            var model = nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("extra", nn.Linear(2, 2)));
            var m = model.WithHooks();
            var before = model.state_dict().ToDictionary(kv => kv.Key, kv => Values(kv.Value));
            using var checkpoint = Checkpoint.Open(Golden("offload"));   // the state dict's key order
            var e = Assert.Throws<StateDictLoadException>(() => m.load_state_dict(checkpoint))!;
            Assert.That(e.Message, Does.StartWith(Expected.GetProperty("incompatible").GetProperty("strict_message").GetString()!));
            Assert.That(e.MissingKeys, Is.EqualTo(new[] { "extra.weight", "extra.bias" }));
            foreach (var (key, t) in model.state_dict()) Assert.That(Values(t), Is.EqualTo(before[key]), $"{key} untouched");
        }

        [Test(Description = "PyTorch test_load_state_dict_post_hook: a post-hook sees the incompatible keys and may clear them")]
        public void Post_hook_may_clear_incompatible_keys()
        {
            var model = nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("extra", nn.Linear(2, 2)));
            var m = model.WithHooks();
            using var h = m.Root.register_load_state_dict_post_hook((mod, keys) => { keys.missing_keys.Clear(); keys.unexpected_keys.Clear(); });
            using var checkpoint = Checkpoint.Open(Golden("small.safetensors"));
            var result = m.load_state_dict(checkpoint, strict: false);
            Assert.That(result.ToString(), Is.EqualTo("<All keys matched successfully>"));
        }

        [Test(Description = "PyTorch test_state_dict_hook: state-dict post-hooks per module in PyTorch's order with the dict so far; a pre-hook runs before the module's tensors; the dict round-trips through load_state_dict")]
        public void State_dict_hooks_run_in_PyTorch_order()
        {
            var model = nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("extra", nn.Linear(2, 2)));
            var m = model.WithHooks();
            var events = new List<string>();
            var handles = m.Paths.Select(path => m[path].register_state_dict_post_hook((mod, sd, prefix, md) => events.Add($"state_dict_post|{path}|{prefix}|{sd.Count}"))).ToList();
            var pre = new List<string>();
            handles.AddRange(m.Paths.Select(path => m[path].register_state_dict_pre_hook((mod, prefix, keep) => pre.Add(prefix))));
            using var sd = m.StateDict();
            var golden = Expected.GetProperty("incompatible").GetProperty("state_dict_events").EnumerateArray()
                .Select(e => string.Join("|", e.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number ? v.GetInt32().ToString() : v.GetString()))).ToList();
            Assert.That(events, Is.EqualTo(golden));
            Assert.That(pre, Is.EqualTo(new[] { "", "fc1.", "norm.", "bn.", "extra." }));
            foreach (var h in handles) h.Dispose();

            var copy = nn.Sequential(("fc1", nn.Linear(4, 3)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("extra", nn.Linear(2, 2)));
            copy.WithHooks().load_state_dict(sd);
            foreach (var (key, t) in copy.state_dict()) Assert.That(Values(t), Is.EqualTo(Values(model.state_dict()[key])), key);
        }

        [Test(Description = "shape and dtype mismatches are refused with PyTorch's size-mismatch wording (dtype: a clear error and the fix); nothing is written")]
        public void Shape_and_dtype_mismatch_refused()
        {
            var wide = nn.Sequential(("fc1", nn.Linear(4, 5)), ("norm", nn.LayerNorm(3)), ("bn", nn.BatchNorm1d(3)), ("fc2", nn.Linear(3, 2)));
            using var checkpoint = Checkpoint.Open(Golden("small.safetensors"));
            var fc2Before = Values(((Linear)wide[3]).weight!);
            var e = Assert.Throws<StateDictLoadException>(() => wide.WithHooks().load_state_dict(checkpoint))!;
            Assert.That(e.Message, Does.Contain("size mismatch for fc1.weight: copying a param with shape torch.Size([3, 4]) from checkpoint, the shape in current model is torch.Size([5, 4])."));
            Assert.That(Values(((Linear)wide[3]).weight!), Is.EqualTo(fc2Before), "fc2 untouched although it matched");

            var doubles = SmallModel();
            doubles.to(ScalarType.Float64);
            var d = Assert.Throws<StateDictLoadException>(() => doubles.WithHooks().load_state_dict(checkpoint))!;
            Assert.That(d.Message, Does.Contain("dtype mismatch for fc1.weight").And.Contain("Float32").And.Contain("pre-hook"));
        }

        private static string Corrupt(string name, Func<byte[], byte[]> edit)
        {
            var path = Path.Combine(Path.GetTempPath(), $"th18-{Guid.NewGuid():N}-{name}");
            File.WriteAllBytes(path, edit(File.ReadAllBytes(Golden("small.safetensors"))));
            return path;
        }

        /// <summary>Edits the JSON header of a safetensors file and rewrites its length prefix.</summary>
        private static byte[] Patch(byte[] bytes, string from, string to)
        {
            long n = BitConverter.ToInt64(bytes, 0);
            var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
            Assert.That(header, Does.Contain(from));
            var edited = Encoding.UTF8.GetBytes(header.Replace(from, to));
            return BitConverter.GetBytes((long)edited.Length).Concat(edited).Concat(bytes.Skip(8 + (int)n)).ToArray();
        }

        [TestCase("truncated.safetensors", "truncated", TestName = "Bad_input_truncated_file")]
        [TestCase("lying.safetensors", "lies about its offsets", TestName = "Bad_input_header_lies_about_offsets")]
        [TestCase("size.safetensors", "needs 8; the header is corrupt", TestName = "Bad_input_offsets_disagree_with_shape")]
        [TestCase("json.safetensors", "not valid JSON", TestName = "Bad_input_corrupt_header")]
        [TestCase("length.safetensors", "header length", TestName = "Bad_input_header_length")]
        [TestCase("dtype.safetensors", "dtype 'Q9'", TestName = "Bad_input_unknown_dtype")]
        public void Bad_safetensors_refused_when_opened(string name, string message)
        {
            string path = name switch
            {
                "truncated.safetensors" => Corrupt(name, b => b[..^4]),
                "lying.safetensors" => Corrupt(name, b => Patch(b, "\"data_offsets\":[0,8]", "\"data_offsets\":[8,16]")),
                "size.safetensors" => Corrupt(name, b => Patch(b, "\"data_offsets\":[0,8]", "\"data_offsets\":[0,12]")),
                "json.safetensors" => Corrupt(name, b => Patch(b, "{\"__metadata__\"", "[\"__metadata__\"")),
                "length.safetensors" => Corrupt(name, b => { var c = (byte[])b.Clone(); c[7] = 0x40; return c; }),
                _ => Corrupt(name, b => Patch(b, "\"dtype\":\"F32\"", "\"dtype\":\"Q9\"")),
            };
            try
            {
                var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(path))!;
                TestContext.Out.WriteLine(e.Message);
                Assert.That(e.Message, Does.Contain(message).And.Contain(path));
            }
            finally { File.Delete(path); }
        }

        [Test(Description = "a sharded index naming a tensor its shard lacks, or a shard outside its folder, is refused when opened")]
        public void Bad_sharded_index_refused()
        {
            var dir = Path.Combine(Path.GetTempPath(), $"th18-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                foreach (var f in Directory.GetFiles(Golden("sharded"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                var index = Path.Combine(dir, "model.safetensors.index.json");
                var text = File.ReadAllText(index);
                File.WriteAllText(index, text.Replace("\"fc1.bias\"", "\"fc1.gone\""));
                var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(dir))!;
                Assert.That(e.Message, Does.Contain("'fc1.gone'").And.Contain("no such tensor"));
                File.WriteAllText(index, text.Replace("\"model-00001-of-00002.safetensors\"", "\"../model-00001-of-00002.safetensors\""));
                Assert.That(() => Checkpoint.Open(dir), Throws.TypeOf<CheckpointFormatException>().With.Message.Contains("not a file name"));
            }
            finally { Directory.Delete(dir, recursive: true); }
        }

        [Test(Description = "a truncated Module.save file, and an offload folder with a short .dat, are refused when opened")]
        public void Bad_torchsharp_file_and_offload_folder_refused()
        {
            var path = Path.Combine(Path.GetTempPath(), $"th18-{Guid.NewGuid():N}.bin");
            var dir = Path.Combine(Path.GetTempPath(), $"th18-{Guid.NewGuid():N}");
            try
            {
                SmallModel().save(path);
                var bytes = File.ReadAllBytes(path);
                File.WriteAllBytes(path, bytes[..^3]);
                Assert.That(() => Checkpoint.Open(path), Throws.TypeOf<CheckpointFormatException>().With.Message.Contains("truncated"));
                File.WriteAllBytes(path, bytes.Concat(new byte[] { 1, 2 }).ToArray());
                Assert.That(() => Checkpoint.Open(path), Throws.TypeOf<CheckpointFormatException>().With.Message.Contains("2 bytes follow"));

                Directory.CreateDirectory(dir);
                foreach (var f in Directory.GetFiles(Golden("offload"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                File.WriteAllBytes(Path.Combine(dir, "fc1.weight.dat"), new byte[40]);
                Assert.That(() => Checkpoint.Open(dir), Throws.TypeOf<CheckpointFormatException>().With.Message.Contains("has 40 bytes"));
            }
            finally
            {
                File.Delete(path);
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            }
        }

        [Test(Description = "a file changed after it was opened is refused at load, before any weight moves")]
        public void File_changed_after_open_refused()
        {
            var path = Corrupt("changed.safetensors", b => b);
            try
            {
                var model = SmallModel();
                var before = Values(((Linear)model[0]).weight!);
                using var checkpoint = Checkpoint.Open(path);
                File.WriteAllBytes(path, File.ReadAllBytes(path)[..^8]);
                Assert.That(() => model.WithHooks().load_state_dict(checkpoint), Throws.TypeOf<CheckpointFormatException>().With.Message.Contains("changed since"));
                Assert.That(Values(((Linear)model[0]).weight!), Is.EqualTo(before), "fc1 untouched");
            }
            finally { File.Delete(path); }
        }

        [Test(Description = "repeated streaming loads leave the live-tensor count flat")]
        public void Repeated_loads_leave_no_tensors_behind()
        {
            var model = SmallModel();
            var m = model.WithHooks();
            void Load() { using var c = Checkpoint.Open(Golden("small.safetensors")); using var sd = new StateDict(c); _ = sd["fc1.weight"]; m.load_state_dict(sd); }
            Load();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long before = Tensor.TotalCount;
            for (int i = 0; i < 50; i++) Load();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Assert.That(Tensor.TotalCount, Is.EqualTo(before));
        }
    }
}
