using System;
using System.Threading;

namespace TorchHooks
{
    /// <summary>
    /// Something that watches work done for module calls outside the calls' own spans — an offloaded module's weights
    /// read from its store, a wait for a read ahead, a read ahead on the prefetch thread — through the seam's observer
    /// route (<see cref="SpanEvents"/>). Tracing subscribes one while a tracer is open; the code doing the work never
    /// names it.
    /// </summary>
    internal abstract class SpanObserver
    {
        /// <summary>
        /// A span of work on the calling thread, from <paramref name="startTimestamp"/> to <paramref name="endTimestamp"/>
        /// (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> values): its <paramref name="name"/> (e.g.
        /// <c>offload.load</c>), the module it was for, and the bytes it moved.
        /// </summary>
        public abstract void Span(string name, HookPoint node, long bytes, long startTimestamp, long endTimestamp);
    }

    /// <summary>
    /// The seam's observer route for spans of work done for module calls (<see cref="SpanObserver"/>): producers ask
    /// <see cref="Requested"/> (one volatile read; nothing else is done, not even a timestamp, when no one listens) and
    /// publish <see cref="Span"/> on the thread that did the work. Copy-on-write: publishing reads one array.
    /// </summary>
    internal static class SpanEvents
    {
        private static SpanObserver[] s_observers = Array.Empty<SpanObserver>();
        private static readonly object s_gate = new();

        /// <summary>Whether any observer is subscribed.</summary>
        public static bool Requested => Volatile.Read(ref s_observers).Length > 0;

        /// <summary>Subscribes <paramref name="observer"/> (once; adding it again does nothing).</summary>
        public static void Add(SpanObserver observer)
        {
            lock (s_gate)
            {
                var old = s_observers;
                if (Array.IndexOf(old, observer) >= 0) return;
                var next = new SpanObserver[old.Length + 1];
                old.CopyTo(next, 0);
                next[^1] = observer;
                Volatile.Write(ref s_observers, next);
            }
        }

        /// <summary>Unsubscribes <paramref name="observer"/> (nothing if it was not subscribed).</summary>
        public static void Remove(SpanObserver observer)
        {
            lock (s_gate)
            {
                var old = s_observers;
                int i = Array.IndexOf(old, observer);
                if (i < 0) return;
                var next = new SpanObserver[old.Length - 1];
                Array.Copy(old, 0, next, 0, i);
                Array.Copy(old, i + 1, next, i, old.Length - i - 1);
                Volatile.Write(ref s_observers, next);
            }
        }

        /// <summary>Publishes a span of work done on the calling thread.</summary>
        public static void Span(string name, HookPoint node, long bytes, long startTimestamp, long endTimestamp)
        {
            foreach (var o in Volatile.Read(ref s_observers)) o.Span(name, node, bytes, startTimestamp, endTimestamp);
        }
    }
}
