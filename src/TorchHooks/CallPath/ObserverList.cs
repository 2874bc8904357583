using System;
using System.Threading;

namespace TorchHooks
{
    /// <summary>
    /// The observers of one of the seam's observer routes (<see cref="BackwardEvents"/>, <see cref="SpanEvents"/>):
    /// copy-on-write, so publishing reads one array (<see cref="Items"/>) without a lock; subscribing and unsubscribing
    /// are rare and serialized.
    /// </summary>
    internal sealed class ObserverList<T> where T : class
    {
        private T[] _items = Array.Empty<T>();
        private readonly object _gate = new();

        /// <summary>The observers now (a snapshot: never changed in place).</summary>
        public T[] Items => Volatile.Read(ref _items);

        /// <summary>Adds <paramref name="observer"/> once; false if it was already there.</summary>
        public bool Add(T observer)
        {
            lock (_gate)
            {
                var old = _items;
                if (Array.IndexOf(old, observer) >= 0) return false;
                var next = new T[old.Length + 1];
                old.CopyTo(next, 0);
                next[^1] = observer;
                Volatile.Write(ref _items, next);
                return true;
            }
        }

        /// <summary>Removes <paramref name="observer"/>; false if it was not there.</summary>
        public bool Remove(T observer)
        {
            lock (_gate)
            {
                var old = _items;
                int i = Array.IndexOf(old, observer);
                if (i < 0) return false;
                var next = new T[old.Length - 1];
                Array.Copy(old, 0, next, 0, i);
                Array.Copy(old, i + 1, next, i, old.Length - i - 1);
                Volatile.Write(ref _items, next);
                return true;
            }
        }
    }
}
