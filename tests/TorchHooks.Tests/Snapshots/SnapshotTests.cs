using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using NUnit.Framework;
using NUnit.Framework.Constraints;
using NUnit.Framework.Internal;
using TorchHooks.NUnit;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Snapshots
{
    /// <summary>
    /// The snapshot assertion (src/TorchHooks.NUnit): recording, the file, and a failure for each kind of drift
    /// naming the first divergent module in call order. Each test keeps its snapshots in its own temporary folder
    /// and reads the environment through the constraint's seam (no CI unless the test says so).
    /// </summary>
    [TestFixture]
    public partial class SnapshotTests
    {
        private string _dir = null!;

        [SetUp]
        public void CreateFolder()
        {
            _dir = Path.Combine(Path.GetTempPath(), $"torchhooks-snapshots-{Guid.NewGuid():N}");
            Directory.CreateDirectory(_dir);
        }

        [TearDown]
        public void DeleteFolder()
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }

        private static Func<string, string?> Env(params (string Name, string Value)[] vars)
            => name => vars.FirstOrDefault(v => v.Name == name).Value;

        private SnapshotConstraint Snap(string name, Tensor input, Func<string, string?>? env = null)
        {
            var c = Matches.Snapshot(name, input).In(_dir);
            c.Environment = env ?? Env();
            return c;
        }

        private static (bool Success, string Message) Apply(SnapshotConstraint c, object model)
        {
            var result = c.ApplyTo(model);
            var writer = new TextMessageWriter();
            result.WriteMessageTo(writer);
            return (result.IsSuccess, writer.ToString());
        }

        /// <summary>Creates the snapshot from <paramref name="baseline"/>, then checks <paramref name="changed"/> against it.</summary>
        private (bool Success, string Message) Drift(nn.Module<Tensor, Tensor> baseline, nn.Module<Tensor, Tensor> changed, Func<SnapshotConstraint, SnapshotConstraint>? refine = null)
        {
            using var x = SnapMlp.Input();
            var created = Apply(Snap("mlp", x), baseline);
            Assert.That(created.Success, Is.True, created.Message);
            var check = Snap("mlp", x);
            var result = Apply(refine?.Invoke(check) ?? check, changed);
            TestContext.Out.WriteLine(result.Message);
            return result;
        }

        private static void AssertFirstDivergence(string message, string module, string field)
        {
            Assert.That(message, Does.Contain($"First divergence in call order: {module}"));
            Assert.That(message, Does.Contain($"  field:    {field}"));
            Assert.That(message, Does.Contain("TORCHHOOKS_UPDATE_SNAPSHOTS=1"));
        }

        [Test]
        public void Record_round_trips_through_json_and_is_deterministic()
        {
            using var x = SnapMlp.Input();
            var model = new SnapMlp().WithHooks();
            var a = SnapshotBuilder.Record("mlp", new HookCallRecorder(), () => model.call(x));
            var b = SnapshotBuilder.Record("mlp", new HookCallRecorder(), () => model.call(x));
            string json = a.ToJson();
            Assert.That(b.ToJson(), Is.EqualTo(json), "two recordings of the same pass are byte-identical");
            Assert.That(ModelSnapshot.FromJson(json).ToJson(), Is.EqualTo(json), "read back and written again: the same text");
            Assert.That(SnapshotComparer.Compare(ModelSnapshot.FromJson(json), b, new CompareOptions()).Matches, Is.True);

            Assert.That(a.Calls.Select(c => c.Display), Is.EqualTo(new[] { "<root>", "fc1", "act", "fc2" }), "call order, root first");
            Assert.That(a.Calls.Select(c => c.Type), Is.EqualTo(new[] { "SnapMlp", "Linear", "ReLU", "Linear" }));
            Assert.That(a.Calls.Select(c => c.Depth), Is.EqualTo(new[] { 0, 1, 1, 1 }));
            Assert.That(a.Calls[1].Params, Is.EqualTo(4 * 8 + 8));
            Assert.That(a.Calls[1].Inputs, Is.EqualTo(new[] { "float32[4, 4]" }));
            Assert.That(a.Calls[3].Outputs!.Single().Tensor, Is.EqualTo("float32[4, 2]"));
            Assert.That(a.Parameters, Is.EqualTo(4 * 8 + 8 + 8 * 2 + 2));
            Assert.That(a.Autocast, Is.EqualTo("off"));
            // The fingerprint is the tensor's: check it against torch directly.
            using (no_grad())
            using (var y = model.call(x))
            {
                var o = a.Calls[0].Outputs!.Single();
                Assert.That(o.Mean, Is.EqualTo(y.to(float64).mean().item<double>()).Within(1e-12));
                Assert.That(o.Max, Is.EqualTo(y.to(float64).max().item<double>()).Within(1e-12));
                Assert.That(o.Samples!.Keys, Is.EqualTo(new[] { "0", "2", "4", "5", "7" }), "first, quartiles and last of 8 values");
                Assert.That(o.Samples["7"], Is.EqualTo(y.to(float64).flatten()[7].item<double>()));
            }
            // Stable field order for clean diffs.
            var keys = json.Split('\n').Where(l => l.StartsWith("  \"")).Select(l => l.Trim().Split('"')[1]).ToList();
            Assert.That(keys, Is.EqualTo(new[] { "format", "name", "model", "training", "autocast", "parameters", "calls" }));
            Assert.That(json, Does.Contain("\"format\": \"torchhooks-snapshot/1\""));
        }

        [Test]
        public void Missing_snapshot_is_created_then_an_unchanged_model_passes()
        {
            using var x = SnapMlp.Input();
            var c = Snap("mlp", x);
            Assert.That(File.Exists(c.FilePath), Is.False);
            Assert.That(c.FilePath, Is.EqualTo(Path.Combine(_dir, "SnapshotTests.mlp.json")), "<test source file>.<name>.json");
            Assert.That(Apply(c, new SnapMlp()).Success, Is.True);
            Assert.That(File.Exists(c.FilePath), Is.True);
            string written = File.ReadAllText(c.FilePath);

            // A fresh model of the same definition, unwrapped or wrapped, and the one-line assertion itself.
            Assert.That(Apply(Snap("mlp", x), new SnapMlp()), Is.EqualTo((true, "")));
            Assert.That(Apply(Snap("mlp", x), new SnapMlp().WithHooks()), Is.EqualTo((true, "")));
            var line = Matches.Snapshot("mlp", x).In(_dir);
            line.Environment = Env();
            Assert.That(new SnapMlp(), line);
            Assert.That(File.ReadAllText(c.FilePath), Is.EqualTo(written), "a passing check never rewrites the file");
            Assert.That(ModuleHooks.Handles, Is.Empty, "the recorder's global hooks are removed");
        }

        [Test, Description("A layer of another size: the first divergence is that layer's parameter count, not the root")]
        public void Changed_layer_size_names_the_layer()
        {
            var (ok, message) = Drift(new SnapMlp(hidden: 8), new SnapMlp(hidden: 16));
            Assert.That(ok, Is.False);
            AssertFirstDivergence(message, "fc1 (Linear), call 2 of 4", "params");
            Assert.That(message, Does.Contain("expected: 40").And.Contain("actual:   80"));
            Assert.That(message, Does.Contain("  - ").And.Contain("  + "), "the compact diff");
        }

        [Test, Description("A module inserted into the forward: named where it is called")]
        public void Inserted_module_names_the_inserted_path()
        {
            var (ok, message) = Drift(new SnapMlp(), new SnapMlp(extraLayer: true));
            Assert.That(ok, Is.False);
            Assert.That(message, Does.Contain("First divergence in call order: extra (Linear)"));
            Assert.That(message, Does.Contain("  field:    call").And.Contain("a module was inserted here"));
            Assert.That(message, Does.Contain("  +   extra Linear  params 72 float32"), "the diff shows the new call as added");
        }

        [Test]
        public void Changed_activation_names_the_activation_and_its_type()
        {
            var (ok, message) = Drift(new SnapMlp(activation: "relu"), new SnapMlp(activation: "gelu"));
            Assert.That(ok, Is.False);
            AssertFirstDivergence(message, "act (ReLU)", "type");
            Assert.That(message, Does.Contain("expected: ReLU").And.Contain("actual:   GELU"));
        }

        [Test]
        public void Changed_weight_names_the_layer_whose_output_moved()
        {
            var changed = new SnapMlp();
            using (no_grad()) changed.Fc2.weight![0, 0].add_(0.05);
            var (ok, message) = Drift(new SnapMlp(), changed);
            Assert.That(ok, Is.False);
            AssertFirstDivergence(message, "fc2 (Linear), call 4 of 4", "outputs[0].mean");
            Assert.That(message, Does.Contain("tolerance for float32: 1e-05"));
        }

        [Test]
        public void Dtype_change_names_the_layer()
        {
            var (ok, message) = Drift(new SnapMlp(), new SnapMlp(fc2Dtype: ScalarType.Float64));
            Assert.That(ok, Is.False);
            AssertFirstDivergence(message, "fc2 (Linear)", "paramDtype");
            Assert.That(message, Does.Contain("expected: float32").And.Contain("actual:   float64"));
        }

        [Test, Description("bf16 autocast: a drift below bf16's resolution passes with the bfloat16 tolerance and fails with float32's")]
        public void Bf16_autocast_passes_with_bf16_tolerance_and_fails_with_float32s()
        {
            using var x = SnapMlp.Input();
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                Assert.That(Apply(Snap("mlp", x), new SnapMlp()).Success, Is.True);
                var json = File.ReadAllText(Snap("mlp", x).FilePath);
                Assert.That(json, Does.Contain("\"autocast\": \"cpu bfloat16\"").And.Contain("bfloat16[4, 2]"));

                var bf16 = Apply(Snap("mlp", x), new SnapMlp().Perturb(1e-3));
                Assert.That(bf16.Success, Is.True, bf16.Message);

                var strict = Apply(Snap("mlp", x).Within(ScalarType.BFloat16, 1e-5), new SnapMlp().Perturb(1e-3));
                Assert.That(strict.Success, Is.False);
                Assert.That(strict.Message, Does.Contain("tolerance for bfloat16: 1e-05"));
                Assert.That(strict.Message, Does.Match("First divergence in call order: (fc1|fc2) \\(Linear\\)"));

                Assert.That(Apply(Snap("mlp", x).Within(1e-5), new SnapMlp().Perturb(1e-3)).Success, Is.False, "Within(t) sets every floating dtype");
            }
            // The same model without the region: the autocast state is part of the snapshot.
            var off = Apply(Snap("mlp", x), new SnapMlp());
            Assert.That(off.Success, Is.False);
            AssertFirstDivergence(off.Message, "<root> (SnapMlp)", "autocast");
        }

        [Test]
        public void CI_fails_on_a_missing_snapshot_and_says_how_to_create_it()
        {
            using var x = SnapMlp.Input();
            var c = Snap("mlp", x, Env(("CI", "true")));
            var (ok, message) = Apply(c, new SnapMlp());
            Assert.That(ok, Is.False);
            Assert.That(message, Does.Contain("does not exist").And.Contain(c.FilePath)
                .And.Contain("never created in CI (CI=true)").And.Contain("TORCHHOOKS_UPDATE_SNAPSHOTS=1"));
            Assert.That(File.Exists(c.FilePath), Is.False);
        }

        [Test]
        public void Update_rewrites_locally_and_is_refused_in_CI()
        {
            using var x = SnapMlp.Input();
            Assert.That(Apply(Snap("mlp", x), new SnapMlp()).Success, Is.True);
            var changed = new SnapMlp(hidden: 16);
            var ci = Apply(Snap("mlp", x, Env(("CI", "true"), ("TORCHHOOKS_UPDATE_SNAPSHOTS", "1"))), changed);
            Assert.That(ci.Success, Is.False);
            Assert.That(ci.Message, Does.Contain("never written in CI"));
            Assert.That(Apply(Snap("mlp", x, Env(("CI", "true"))).Update(), changed).Success, Is.False);

            Assert.That(Apply(Snap("mlp", x, Env(("TORCHHOOKS_UPDATE_SNAPSHOTS", "1"))), changed).Success, Is.True);
            Assert.That(Apply(Snap("mlp", x), changed).Success, Is.True, "the rewritten snapshot is the changed model's");
            Assert.That(Apply(Snap("mlp", x).Update(), new SnapMlp()).Success, Is.True);
            Assert.That(Apply(Snap("mlp", x), new SnapMlp()).Success, Is.True);
        }

        [Test]
        public void Ignoring_by_path_leaves_a_module_out()
        {
            var (ok, message) = Drift(new SnapMlp(), new SnapMlp(probeModule: true));
            Assert.That(ok, Is.False);
            Assert.That(message, Does.Contain("First divergence in call order: probe (Identity)"));
            Assert.That(Drift(new SnapMlp(), new SnapMlp(probeModule: true), c => c.Ignoring("probe")).Success, Is.True);
            Assert.That(Drift(new SnapMlp(), new SnapMlp(probeModule: true), c => c.Ignoring("pro*")).Success, Is.True);
            Assert.Throws<ArgumentException>(() => Matches.Snapshot("mlp").Ignoring(""));
        }

        [Test]
        public void Path_patterns_match_a_module_and_its_subtree()
        {
            Assert.That(new PathPattern("encoder").Matches("encoder.0.attn"), Is.True);
            Assert.That(new PathPattern("encoder").Matches("encoder2"), Is.False);
            Assert.That(new PathPattern("encoder.*.attn").Matches("encoder.3.attn"), Is.True);
            Assert.That(new PathPattern("encoder.*.attn").Matches("encoder.3.x.attn"), Is.False);
            Assert.That(new PathPattern("**.dropout").Matches("a.b.dropout"), Is.True);
        }

        [Test, Description("Exact mode compares the bytes: a drift far inside the float64 tolerance fails it")]
        public void Exact_mode_fails_on_any_bit()
        {
            var baseline = new GoldenNet();
            var changed = new GoldenNet();
            using (no_grad()) foreach (var p in changed.parameters()) p.mul_(1 + 1e-14);
            using var x = GoldenNet.Input();
            Assert.That(Apply(Snap("golden", x), baseline).Success, Is.True);
            Assert.That(Apply(Snap("golden", x), changed).Success, Is.True, "within float64's 1e-10");
            var exact = Apply(Snap("golden", x).Exact(), changed);
            Assert.That(exact.Success, Is.False);
            Assert.That(exact.Message, Does.Contain("First divergence in call order: enc.0 (Linear)").And.Contain("outputs[0].sha256"));
            Assert.That(Apply(Snap("golden", x).Exact(), new GoldenNet()).Success, Is.True);
        }

        [Test]
        public void Bad_arguments_name_the_argument_and_the_fix()
        {
            var e = Assert.Throws<ArgumentException>(() => Matches.Snapshot("a/b"))!;
            Assert.That(e.ParamName, Is.EqualTo("name"));
            Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Matches.Snapshot("x").Within(-1))!.ParamName, Is.EqualTo("tolerance"));
            using var x = SnapMlp.Input();
            var wrongActual = Assert.Throws<ArgumentException>(() => Snap("mlp", x).ApplyTo("not a model"))!;
            Assert.That(wrongActual.Message, Does.Contain("Module<Tensor, Tensor>").And.Contain("delegate"));
            var noInput = Assert.Throws<ArgumentException>(() => Matches.Snapshot("mlp").In(_dir).ApplyTo(new SnapMlp()))!;
            Assert.That(noInput.Message, Does.Contain("Matches.Snapshot(name, input)"));
            // A delegate that calls nothing wrapped.
            var c = Matches.Snapshot("nothing").In(_dir);
            c.Environment = Env();
            var nothing = Assert.Throws<InvalidOperationException>(() => c.ApplyTo(() => 42))!;
            Assert.That(nothing.Message, Does.Contain("WithHooks()"));
            Assert.That(ModuleHooks.Handles, Is.Empty, "hooks are removed when the pass records nothing");
        }

        [Test, Description("Deterministic CI builds map source paths to /_/...: the snapshot folder is found above the test assembly")]
        public void Mapped_source_paths_resolve_to_the_source_tree()
        {
            string here = Path.Combine(TorchHooks.Tests.Build.BuildTestSupport.RepoRoot, "tests", "TorchHooks.Tests", "Snapshots", "SnapshotTests.cs");
            Assert.That(SnapshotStore.ResolveSource("/_/tests/TorchHooks.Tests/Snapshots/SnapshotTests.cs", TestContext.CurrentContext.TestDirectory), Is.EqualTo(here));
            Assert.That(SnapshotStore.FileFor("mlp", "/_/tests/TorchHooks.Tests/Snapshots/SnapshotTests.cs", null, TestContext.CurrentContext.TestDirectory),
                Is.EqualTo(Path.Combine(Path.GetDirectoryName(here)!, "__snapshots__", "SnapshotTests.mlp.json")));
            var e = Assert.Throws<DirectoryNotFoundException>(() => SnapshotStore.ResolveSource("/_/nowhere/Tests.cs", TestContext.CurrentContext.TestDirectory))!;
            Assert.That(e.Message, Does.Contain(".In(folder)"));
        }

        [Test]
        public void Repeated_checks_do_not_grow_the_live_tensor_count()
        {
            using var x = SnapMlp.Input();
            var model = new SnapMlp();
            Assert.That(Apply(Snap("mlp", x), model).Success, Is.True);
            for (int i = 0; i < 3; i++) Apply(Snap("mlp", x), model);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 30; i++) Assert.That(Apply(Snap("mlp", x), model).Success, Is.True);
            Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.LessThanOrEqualTo(0));
        }
    }
}
