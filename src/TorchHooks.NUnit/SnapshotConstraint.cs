using System;
using System.IO;
using System.Text;
using NUnit.Framework;
using NUnit.Framework.Constraints;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// The NUnit constraint made by <see cref="Matches.Snapshot(string, Tensor, string)"/>: runs the model once,
    /// records its call path and compares it with the snapshot file (creating the file when it is missing). Refine
    /// it with <see cref="Within(double)"/>, <see cref="Ignoring"/>, <see cref="Exact"/>, <see cref="In"/> and
    /// <see cref="Update"/>.
    /// </summary>
    public sealed class SnapshotConstraint : Constraint
    {
        private readonly string _name;
        private readonly Tensor? _input;
        private readonly string _sourceFile;
        private readonly CompareOptions _options = new();
        private string? _folder;
        private bool _update;

        internal SnapshotConstraint(string name, Tensor? input, string sourceFile) : base(name)
        {
            if (string.IsNullOrWhiteSpace(name))
                throw new ArgumentException("A snapshot needs a name, e.g. Matches.Snapshot(\"mlp\", input); it becomes part of the file name.", nameof(name));
            if (name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name.Contains('/') || name.Contains('\\') || name is "." or "..")
                throw new ArgumentException($"The snapshot name \"{name}\" cannot be part of a file name: use letters, digits, '-', '_' or '.'.", nameof(name));
            _name = name;
            _input = input;
            _sourceFile = sourceFile;
        }

        /// <summary>How calls are observed (the tests' seam; TorchHooks' global hooks by default).</summary>
        internal ICallRecorder Recorder { get; set; } = new HookCallRecorder();

        /// <summary>Environment variables as read by this constraint (the tests' seam).</summary>
        internal Func<string, string?>? Environment { get; set; }

        /// <inheritdoc />
        public override string Description => $"matches model snapshot \"{_name}\"";

        /// <summary>
        /// One tolerance for the fingerprints of outputs of every floating dtype: a number passes when
        /// <c>|actual − expected| ≤ tolerance × max(1, |expected|)</c>. Defaults: float64 1e-10, float32 1e-5,
        /// float16 1e-3, bfloat16 1e-2; integer and bool outputs compare exactly.
        /// </summary>
        public SnapshotConstraint Within(double tolerance)
        {
            Tolerances.Check(tolerance, nameof(tolerance));
            _options.Tolerances.SetAll(tolerance);
            return this;
        }

        /// <summary>The tolerance for outputs of one dtype (e.g. a looser one for <c>ScalarType.BFloat16</c>).</summary>
        public SnapshotConstraint Within(ScalarType dtype, double tolerance)
        {
            Tolerances.Check(tolerance, nameof(tolerance));
            _options.Tolerances.Set(dtype, tolerance);
            return this;
        }

        /// <summary>
        /// Leaves the calls of matching modules — and every call inside them — out of the comparison. A pattern is a
        /// path (<c>"dropout"</c>, <c>"encoder.0"</c>) where <c>*</c> matches within one segment and <c>**</c>
        /// across segments (<c>"encoder.*.attn"</c>, <c>"**.dropout"</c>).
        /// </summary>
        public SnapshotConstraint Ignoring(params string[] pathPatterns)
        {
            if (pathPatterns is null) throw new ArgumentNullException(nameof(pathPatterns));
            foreach (var p in pathPatterns)
            {
                if (string.IsNullOrEmpty(p))
                    throw new ArgumentException("An ignore pattern names a module path (the root, \"\", cannot be ignored), e.g. Ignoring(\"dropout\").", nameof(pathPatterns));
                _options.Ignore.Add(new PathPattern(p));
            }
            return this;
        }

        /// <summary>Compares every output bit for bit (SHA-256 of dtype, shape and bytes) instead of by fingerprint within tolerances.</summary>
        public SnapshotConstraint Exact()
        {
            _options.Exact = true;
            return this;
        }

        /// <summary>
        /// Keeps the snapshot in <paramref name="folder"/> (relative to the test's source folder) instead of
        /// <c>__snapshots__</c> next to the test's source file.
        /// </summary>
        public SnapshotConstraint In(string folder)
        {
            if (string.IsNullOrWhiteSpace(folder)) throw new ArgumentException("Give the folder for snapshot files, e.g. In(\"snapshots\").", nameof(folder));
            _folder = folder;
            return this;
        }

        /// <summary>
        /// Rewrites the snapshot from this run (as <c>TORCHHOOKS_UPDATE_SNAPSHOTS=1</c> does). Refused when
        /// <c>CI=true</c>: remove it before committing.
        /// </summary>
        public SnapshotConstraint Update()
        {
            _update = true;
            return this;
        }

        /// <summary>The snapshot file this constraint reads and writes.</summary>
        public string FilePath => SnapshotStore.FileFor(_name, _sourceFile, _folder);

        /// <summary>Records <paramref name="actual"/> — a <c>Module&lt;Tensor, Tensor&gt;</c>, wrapped or not — called with the input, and compares.</summary>
        public override ConstraintResult ApplyTo<TActual>(TActual actual)
        {
            if (actual is not nn.Module<Tensor, Tensor> model)
                throw new ArgumentException(
                    $"Matches.Snapshot(name, input) checks a Module<Tensor, Tensor>; this is {(actual is null ? "null" : actual.GetType().Name)}. " +
                    "For other signatures call a wrapped model in a delegate: Assert.That(() => model.WithHooks().call(a, b), Matches.Snapshot(name)).", nameof(actual));
            if (_input is null)
                throw new ArgumentException("Matches.Snapshot(name) without an input takes a delegate that calls the model: Assert.That(() => m.call(x), Matches.Snapshot(name)); " +
                    "to pass the model itself, give the input: Matches.Snapshot(name, input).", nameof(actual));
            var facade = model.WithHooks();
            var input = _input;
            return Check(actual, () => facade.call(input));
        }

        /// <summary>Runs the delegate (which calls a model wrapped with <c>WithHooks()</c>), records the calls it makes, and compares.</summary>
        public override ConstraintResult ApplyTo<TActual>(ActualValueDelegate<TActual> del)
        {
            if (del is null) throw new ArgumentNullException(nameof(del));
            if (_input is not null)
                throw new ArgumentException("The delegate form calls the model itself: use Matches.Snapshot(name) without an input.", nameof(del));
            return Check(del, () => del());
        }

        private ConstraintResult Check(object? actual, Action pass)
        {
            var store = new SnapshotStore(Environment);
            string file = FilePath;
            var snapshot = SnapshotBuilder.Record(_name, Recorder, pass);
            bool exists = File.Exists(file);
            bool update = _update || store.UpdateRequested;

            if (!exists || update)
            {
                if (store.InCi)
                    return new SnapshotResult(this, actual, false, !exists
                        ? $"Model snapshot \"{_name}\" does not exist: {file}\n" +
                          "Snapshots are never created in CI (CI=true). Create it on your machine — run this test once without CI, " +
                          $"or with {SnapshotStore.UpdateVariable}=1 — then review and commit the file."
                        : $"Model snapshot \"{_name}\" was asked to be rewritten ({(_update ? ".Update()" : SnapshotStore.UpdateVariable + "=1")}), " +
                          $"but snapshots are never written in CI (CI=true). Update it on your machine and commit {file}.");
                Directory.CreateDirectory(Path.GetDirectoryName(file)!);
                File.WriteAllText(file, snapshot.ToJson());
                // TestContext.Error, not Progress: `dotnet test` shows it at its normal verbosity (Progress needs detailed).
                TestContext.Error.WriteLine($"TorchHooks.NUnit: {(exists ? "updated" : "created")} snapshot \"{_name}\" at {file}: review and commit it.");
                return new SnapshotResult(this, actual, true, "");
            }

            ModelSnapshot expected;
            try { expected = ModelSnapshot.FromJson(File.ReadAllText(file)); }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidDataException or NotSupportedException)
            {
                return new SnapshotResult(this, actual, false,
                    $"Model snapshot \"{_name}\" could not be read from {file}: {e.Message}\nRe-record it with {SnapshotStore.UpdateVariable}=1.");
            }
            var comparison = SnapshotComparer.Compare(expected, snapshot, _options);
            return new SnapshotResult(this, actual, comparison.Matches, comparison.Matches ? "" : Message(file, comparison));
        }

        private string Message(string file, Comparison c)
        {
            var d = c.First!;
            var sb = new StringBuilder();
            sb.Append($"Model snapshot \"{_name}\" does not match {file}\n");
            sb.Append($"First divergence in call order: {d.Path} ({d.Type}), call {d.CallNumber} of {d.CallCount}\n");
            sb.Append($"  field:    {d.Field}\n");
            sb.Append($"  expected: {d.Expected}\n");
            sb.Append($"  actual:   {d.Actual}\n");
            if (!string.IsNullOrEmpty(d.Note)) sb.Append($"  ({d.Note})\n");
            if (c.Diff.Count > 0)
            {
                sb.Append($"Calls that differ: {c.DifferingCalls} of {c.Calls} (- snapshot, + this run):\n");
                foreach (var line in c.Diff) sb.Append(line).Append('\n');
            }
            sb.Append($"If the change is intended, re-run with {SnapshotStore.UpdateVariable}=1 (or .Update()), review the file's diff and commit it.");
            return sb.ToString();
        }

        private sealed class SnapshotResult : ConstraintResult
        {
            private readonly string _message;

            public SnapshotResult(IConstraint constraint, object? actual, bool success, string message) : base(constraint, actual, success)
            {
                _message = message;
            }

            public override void WriteMessageTo(MessageWriter writer) => writer.Write(_message);
        }
    }
}
