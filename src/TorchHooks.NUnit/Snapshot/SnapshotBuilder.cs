using System;
using System.Linq;
using TorchSharp;

namespace TorchHooks.NUnit
{
    /// <summary>Runs one pass under a recorder and turns its calls into a <see cref="ModelSnapshot"/>.</summary>
    internal static class SnapshotBuilder
    {
        /// <summary>
        /// Runs <paramref name="pass"/> once with gradients off, inside a dispose scope (every tensor it makes,
        /// its result included, is freed), and records it.
        /// </summary>
        /// <exception cref="InvalidOperationException">No module call was recorded: the model was not wrapped.</exception>
        public static ModelSnapshot Record(string name, ICallRecorder recorder, Action pass)
        {
            string autocast = AutocastText.Current();
            var calls = recorder.Record(() =>
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                pass();
            });
            if (calls.Count == 0)
                throw new InvalidOperationException(
                    "No module call was recorded. Pass the model itself (Assert.That(model, Matches.Snapshot(name, input))), or, in the delegate form, " +
                    "call a model wrapped with WithHooks() through call(...): Assert.That(() => model.WithHooks().call(a, b), Matches.Snapshot(name)).");
            var root = calls[0];
            foreach (var c in calls)
                if (c.Autocast == autocast) c.Autocast = null;
            return new ModelSnapshot
            {
                Name = name,
                Model = root.Type,
                Training = root.Module?.training ?? false,
                Autocast = autocast,
                Parameters = root.Module?.parameters().Sum(p => p.numel()) ?? 0,
                Calls = calls.ToList(),
            };
        }
    }
}
