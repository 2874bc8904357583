using System;
using System.Collections.Generic;
using System.Threading;

namespace TorchHooks
{
    /// <summary>
    /// Where exceptions thrown by backward hooks wait to be delivered: with the thread whose backward pass ran the hook,
    /// and with the model (every tree of the module) whose hook threw — never in a process-wide slot, so a failure in one
    /// thread's or one model's pass neither reaches another nor makes another skip its hooks.
    /// </summary>
    /// <remarks>
    /// On the CPU libtorch runs a backward pass's callbacks on the thread that called <c>backward()</c>, so the thread's
    /// list is what <see cref="BackwardHooks.Backward"/> delivers from. Devices whose backward runs on libtorch's worker
    /// threads leave the failure on that worker; the model's list then delivers it at the model's next hooked call. Each
    /// failure is delivered once, whichever list reaches it first.
    /// </remarks>
    internal static class BackwardHookFailures
    {
        public const string DataKey = "TorchHooks.BackwardHook";

        private sealed class Failure
        {
            public readonly Exception Error;
            private int _taken;
            public Failure(Exception error) { Error = error; }
            public bool Taken => Volatile.Read(ref _taken) != 0;
            public bool TryTake() => Interlocked.Exchange(ref _taken, 1) == 0;
        }

        /// <summary>Failures of hooks that ran on this thread, not yet delivered.</summary>
        [ThreadStatic] private static List<Failure>? t_failures;

        /// <summary>Failures by the id of a tree their module belongs to (guarded by <see cref="s_gate"/>).</summary>
        private static readonly Dictionary<int, List<Failure>> s_byTree = new();
        private static readonly object s_gate = new();
        private static volatile int s_treesWithFailures;

        /// <summary>Whether a hook failed on this thread and was not delivered yet: later hooks on this thread are skipped (PyTorch's pass would have stopped).</summary>
        public static bool HasPending
        {
            get
            {
                var list = t_failures;
                if (list is null) return false;
                list.RemoveAll(f => f.Taken);   // delivered through the model meanwhile
                if (list.Count > 0) return true;
                t_failures = null;
                return false;
            }
        }

        /// <summary>Keeps <paramref name="e"/> for this thread and for the trees of <paramref name="node"/> (null: a tensor's gradient hook, thread only).</summary>
        public static void Stash(Exception e, string where, HookPoint? node)
        {
            try { e.Data[DataKey] = where; }
            catch (Exception) { /* Data may be read-only: the exception still gets delivered */ }
            var failure = new Failure(e);
            (t_failures ??= new List<Failure>()).Add(failure);
            if (node is null) return;
            lock (s_gate)
            {
                foreach (int tree in node.TreeIds())
                {
                    if (!s_byTree.TryGetValue(tree, out var list)) s_byTree[tree] = list = new List<Failure>();
                    list.RemoveAll(f => f.Taken);
                    list.Add(failure);
                }
                s_treesWithFailures = s_byTree.Count;
            }
        }

        /// <summary>Takes this thread's undelivered failures: the first, with the others in its <c>Data[FailureReport.DataKey]</c>; null if none.</summary>
        public static Exception? Take()
        {
            var list = t_failures;
            t_failures = null;
            return Combine(list, null);
        }

        /// <summary>
        /// The way in of a module with backward hooks: a failure left by a plain <c>backward()</c> on this thread, or by a
        /// pass of this module's model on another thread (a device's worker), is thrown now.
        /// </summary>
        public static void ThrowPendingBeforeForward(HookPoint node)
        {
            List<Failure>? mine = t_failures;
            List<Failure>? model = null;
            if (mine is not null) t_failures = null;
            if (s_treesWithFailures > 0)
            {
                lock (s_gate)
                {
                    foreach (int tree in node.TreeIds())
                    {
                        if (!s_byTree.Remove(tree, out var list)) continue;
                        (model ??= new List<Failure>()).AddRange(list);
                    }
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
