using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// Model regression assertions for NUnit: <c>Assert.That(model, Matches.Snapshot("mlp", input))</c> runs the
    /// model once through TorchHooks' call path and compares the pass — the call tree (paths, types, order),
    /// shapes and dtypes, parameter counts, numeric fingerprints of every output, the autocast state — with the
    /// snapshot file <c>__snapshots__/&lt;test file&gt;.mlp.json</c> next to the test. On a mismatch the message
    /// names the first divergent module in call order, the field, expected and actual, and a compact diff.
    /// </summary>
    public static class Matches
    {
        /// <summary>
        /// A constraint for a <c>Module&lt;Tensor, Tensor&gt;</c> (wrapped with <c>WithHooks()</c> or not): the
        /// model is called once with <paramref name="input"/>, gradients off, and compared with snapshot
        /// <paramref name="name"/>. A missing snapshot is created (never when <c>CI=true</c>).
        /// </summary>
        /// <param name="name">The snapshot's name, part of its file name (<c>&lt;test file&gt;.&lt;name&gt;.json</c>).</param>
        /// <param name="input">The model's input.</param>
        /// <param name="sourceFile">Filled in by the compiler: the test's source file, whose folder holds <c>__snapshots__</c>.</param>
        public static SnapshotConstraint Snapshot(string name, Tensor input, [CallerFilePath] string sourceFile = "")
            => new(name, input ?? throw new System.ArgumentNullException(nameof(input), "Give the model's input, e.g. Matches.Snapshot(\"mlp\", torch.ones(4, 3))."), sourceFile);

        /// <summary>
        /// A constraint for a delegate that calls a wrapped model (any signature):
        /// <c>Assert.That(() =&gt; m.call(q, k), Matches.Snapshot("attn"))</c>. Every module call the delegate makes
        /// on this thread through a model wrapped with <c>WithHooks()</c> is recorded.
        /// </summary>
        /// <param name="name">The snapshot's name, part of its file name.</param>
        /// <param name="sourceFile">Filled in by the compiler: the test's source file.</param>
        public static SnapshotConstraint Snapshot(string name, [CallerFilePath] string sourceFile = "")
            => new(name, null, sourceFile);
    }
}
