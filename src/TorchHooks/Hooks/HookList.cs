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
