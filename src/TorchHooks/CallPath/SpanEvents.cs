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
        private static readonly ObserverList<SpanObserver> s_observers = new();

        /// <summary>Whether any observer is subscribed.</summary>
        public static bool Requested => s_observers.Items.Length > 0;

        /// <summary>Subscribes <paramref name="observer"/> (once; adding it again does nothing).</summary>
        public static void Add(SpanObserver observer) => s_observers.Add(observer);

        /// <summary>Unsubscribes <paramref name="observer"/> (nothing if it was not subscribed).</summary>
        public static void Remove(SpanObserver observer) => s_observers.Remove(observer);

        /// <summary>Publishes a span of work done on the calling thread.</summary>
        public static void Span(string name, HookPoint node, long bytes, long startTimestamp, long endTimestamp)
        {
            foreach (var o in s_observers.Items) o.Span(name, node, bytes, startTimestamp, endTimestamp);
        }
    }
}
