using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

namespace TorchHooks
{
    /// <summary>
    /// Where exceptions thrown by backward hooks wait to be delivered: with the thread whose backward pass ran the hook,
    /// and with the model (every tree of the module) whose hook threw — never in a process-wide slot, so a failure in one
    /// thread's or one model's pass neither reaches another nor makes another skip its hooks.
    /// </summary>
    /// <remarks>
    /// On the CPU libtorch runs a backward pass's callbacks on the thread that called <c>backward()</c>: the thread's
    /// list is what <see cref="BackwardHooks.Backward"/> delivers from (the failures of its own pass). After a plain
    /// <c>backward()</c>, the next hooked call of the failing module's model delivers it (on this thread; or on any
    /// thread, for a pass that ran on one of libtorch's device worker threads). Each failure is delivered once,
    /// whichever way reaches it first.
    /// </remarks>
    internal static class BackwardHookFailures
    {
        public const string DataKey = "TorchHooks.BackwardHook";

        private sealed class Failure
        {
            public readonly Exception Error;
            /// <summary>The trees of the module whose hook threw; null for a tensor's gradient hook (no model).</summary>
            public readonly int[]? Trees;
            private int _taken;
            public Failure(Exception error, int[]? trees) { Error = error; Trees = trees; }
            public bool Taken => Volatile.Read(ref _taken) != 0;
            public bool TryTake() => Interlocked.Exchange(ref _taken, 1) == 0;
            public bool Concerns(HookPoint? node) => Trees is null || node is null || Trees.Any(t => Contains(node, t));
        }

        /// <summary>Failures of hooks that ran on this thread, not yet delivered, in order.</summary>
        [ThreadStatic] private static List<Failure>? t_failures;

        /// <summary>Failures by the id of a tree their module belongs to (guarded by <see cref="s_gate"/>).</summary>
        private static readonly Dictionary<int, List<Failure>> s_byTree = new();
        private static readonly object s_gate = new();
        private static volatile int s_treesWithFailures;

        private static bool Contains(HookPoint node, int tree)
        {
            lock (Dispatchers.Gate) return node.TreeIds().Contains(tree);
        }

        /// <summary>
        /// Whether a hook of <paramref name="node"/>'s model (or, for null, any hook) failed on this thread and was not
        /// delivered yet: then this hook is skipped, as PyTorch's pass would have stopped. Other models' hooks and other
        /// threads' hooks still run.
        /// </summary>
        public static bool HasPendingFor(HookPoint? node)
        {
            var list = t_failures;
            if (list is null) return false;
            list.RemoveAll(f => f.Taken);   // delivered through the model meanwhile
            if (list.Count == 0) { t_failures = null; return false; }
            foreach (var f in list)
                if (f.Concerns(node)) return true;
            return false;
        }

        /// <summary>Keeps <paramref name="e"/> for this thread and for the trees of <paramref name="node"/> (null: a tensor's gradient hook, thread only).</summary>
        public static void Stash(Exception e, string where, HookPoint? node)
        {
            try { e.Data[DataKey] = where; }
            catch (Exception) { /* Data may be read-only: the exception still gets delivered */ }
            int[]? trees = null;
            if (node is not null) lock (Dispatchers.Gate) trees = node.TreeIds().ToArray();
            var failure = new Failure(e, trees);
            (t_failures ??= new List<Failure>()).Add(failure);
            if (trees is null) return;
            lock (s_gate)
            {
                foreach (int tree in trees)
                {
                    if (!s_byTree.TryGetValue(tree, out var list)) s_byTree[tree] = list = new List<Failure>();
                    list.RemoveAll(f => f.Taken);
                    list.Add(failure);
                }
                s_treesWithFailures = s_byTree.Count;
            }
        }

        /// <summary>A mark in this thread's failures: <see cref="TakeSince"/> takes the ones stashed after it (a pass's own).</summary>
        public static int Mark => t_failures?.Count ?? 0;

        /// <summary>Takes this thread's undelivered failures stashed since <paramref name="mark"/>: the first, with the others in its <c>Data[FailureReport.DataKey]</c>; null if none.</summary>
        public static Exception? TakeSince(int mark)
        {
            var list = t_failures;
            if (list is null || list.Count <= mark) return null;
            var mine = list.GetRange(mark, list.Count - mark);
            list.RemoveRange(mark, list.Count - mark);
            if (list.Count == 0) t_failures = null;
            return Combine(mine, null);
        }

        /// <summary>Takes every undelivered failure of this thread.</summary>
        public static Exception? Take() => TakeSince(0);

        /// <summary>
        /// The way in of a module with backward hooks: a failure of this module's model left by a plain <c>backward()</c>
        /// on this thread, or by a pass of the model on a device's worker thread, is thrown now.
        /// </summary>
        public static void ThrowPendingBeforeForward(HookPoint node)
        {
            List<Failure>? mine = null, model = null;
            if (t_failures is { } list)
            {
                foreach (var f in list)
                    if (f.Concerns(node)) (mine ??= new List<Failure>()).Add(f);
                if (mine is not null)
                {
                    list.RemoveAll(mine.Contains);
                    if (list.Count == 0) t_failures = null;
                }
            }
            if (s_treesWithFailures > 0)
            {
                int[] trees;
                lock (Dispatchers.Gate) trees = node.TreeIds().ToArray();
                lock (s_gate)
                {
                    foreach (int tree in trees)
                        if (s_byTree.Remove(tree, out var failures)) (model ??= new List<Failure>()).AddRange(failures);
                    s_treesWithFailures = s_byTree.Count;
                }
            }
            if (Combine(mine, model) is { } e) throw new BackwardHookException(e);
        }

        private static Exception? Combine(List<Failure>? a, List<Failure>? b)
        {
            Exception? first = null;
            List<Exception>? more = null;
            foreach (var list in new[] { a, b })
            {
                if (list is null) continue;
                foreach (var f in list)
                {
                    if (!f.TryTake()) continue;
                    if (first is null) first = f.Error;
                    else (more ??= new List<Exception>()).Add(f.Error);
                }
            }
            if (first is not null && more is not null)
            {
                try { first.Data[FailureReport.DataKey] = more.ToArray(); }
                catch (Exception) { /* read-only Data */ }
            }
            return first;
        }
    }
}
