using System;
using System.Threading;

namespace TorchHooks
{
    /// <summary>One registered hook: its handle, its delegate and its flags.</summary>
    internal sealed class HookEntry
    {
        public HookEntry(Delegate fn, bool alwaysCall) { Fn = fn; AlwaysCall = alwaysCall; }
        public RemovableHandle Handle = null!;
        public readonly Delegate Fn;
        public readonly bool AlwaysCall;
    }

    /// <summary>
    /// An ordered, copy-on-write list of hooks. Readers take <see cref="Snapshot"/> (one volatile read,
    /// no allocation) and iterate it: hooks registered or removed during a call take effect from the
    /// next call, and the order stays insertion order (with prepend) after any removal.
    /// </summary>
    internal sealed class HookList
    {
        private static readonly HookEntry[] s_empty = Array.Empty<HookEntry>();
        private HookEntry[] _entries = s_empty;
        private readonly Action _changed;

        public HookList(Action changed) { _changed = changed; }

        // ---- the global hook kinds (ModuleHooks), each registered by the list that holds it ----
        private static HookList[] s_global = Array.Empty<HookList>();
        private static readonly object s_globalGate = new();
        private int _globalOrder;
        private string _kind = "";

        /// <summary>
        /// A list of global hooks of one kind (e.g. forward pre-hooks): it registers itself, so
        /// <see cref="ModuleHooks.Handles"/> and <see cref="ModuleHooks.RemoveAll"/> see every kind there is. A change
        /// recomputes the fast path's global flag. <paramref name="order"/> places the kind among the others in
        /// <see cref="GlobalHandles"/> (PyTorch's order of the hook kinds on the call path: lower first).
        /// </summary>
        public static HookList Global(string kind, int order)
        {
            var list = new HookList(CallPath.RecomputeEverywhere) { _kind = kind, _globalOrder = order };
            lock (s_globalGate)
            {
                var next = new HookList[s_global.Length + 1];
                s_global.CopyTo(next, 0);
                next[^1] = list;
                Array.Sort(next, (a, b) => a._globalOrder.CompareTo(b._globalOrder));
                Volatile.Write(ref s_global, next);
            }
            return list;
        }

        /// <summary>The kinds of global hooks registered so far (tests, diagnostics).</summary>
        internal static string[] GlobalKinds => Array.ConvertAll(Volatile.Read(ref s_global), l => l._kind);

        /// <summary>The handles of every global hook of every kind: kinds in their order, hooks in registration order.</summary>
        public static System.Collections.Generic.List<RemovableHandle> GlobalHandles()
        {
            var handles = new System.Collections.Generic.List<RemovableHandle>();
            foreach (var list in Volatile.Read(ref s_global))
                foreach (var entry in list.Snapshot) handles.Add(entry.Handle);
            return handles;
        }

        public HookEntry[] Snapshot => Volatile.Read(ref _entries);

        public int Count => Snapshot.Length;

        public RemovableHandle Add(Delegate fn, bool prepend, bool alwaysCall)
        {
            if (fn is null) throw new ArgumentNullException("hook", "Pass a hook delegate, e.g. (m, x) => null.");
            var entry = new HookEntry(fn, alwaysCall);
            entry.Handle = new RemovableHandle(_ => Remove(entry));
            lock (this)   // internal, never handed out: its own lock
            {
                var old = _entries;
                var next = new HookEntry[old.Length + 1];
                if (prepend) { next[0] = entry; Array.Copy(old, 0, next, 1, old.Length); }
                else { Array.Copy(old, next, old.Length); next[old.Length] = entry; }
                Volatile.Write(ref _entries, next);
            }
            _changed();
            return entry.Handle;
        }

        private void Remove(HookEntry entry)
        {
            lock (this)   // internal, never handed out: its own lock
            {
                var old = _entries;
                int i = Array.IndexOf(old, entry);
                if (i < 0) return;
                var next = old.Length == 1 ? s_empty : new HookEntry[old.Length - 1];
                Array.Copy(old, 0, next, 0, i);
                Array.Copy(old, i + 1, next, i, old.Length - i - 1);
                Volatile.Write(ref _entries, next);
            }
            _changed();
        }
    }
}
