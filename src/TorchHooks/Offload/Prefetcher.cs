using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Reads the weights of the next offloaded modules on a background thread while the current one computes — the
    /// prefetching Accelerate's disk offload lacks, FSDP's forward prefetch. The call order is learned from the first
    /// pass (each offloaded module's first call appends it); from then on, entering a module queues the modules after
    /// it in that order (wrapping to the next pass) as long as the bytes read ahead and not yet used stay within
    /// <see cref="BudgetBytes"/>. A module whose read is under way when it is called waits for it.
    /// </summary>
    internal sealed class Prefetcher : IDisposable
    {
        private readonly object _lock = new();
        private readonly List<OffloadHook> _order = new();
        private readonly Dictionary<OffloadHook, int> _index = new();
        private readonly Dictionary<OffloadHook, TaskCompletionSource<Tensor?[]>> _pending = new();
        private readonly BlockingCollection<(OffloadHook Hook, Tensor?[] Into, TaskCompletionSource<Tensor?[]> Result)> _queue = new();
        private readonly Thread _thread;
        private long _held;
        private bool _disposed;

        public Prefetcher(long budgetBytes)
        {
            BudgetBytes = budgetBytes;
            _thread = new Thread(Run) { IsBackground = true, Name = "TorchHooks offload prefetch" };
            _thread.Start();
        }

        /// <summary>The most bytes read ahead and not yet used.</summary>
        public long BudgetBytes { get; }

        /// <summary>Modules served from a finished read ahead, and those that had to wait for one under way.</summary>
        public int Hits, Waits;

        /// <summary><paramref name="hook"/>'s module was entered: learn the order, or queue the modules after it.</summary>
        public void Entered(OffloadHook hook)
        {
            lock (_lock)
            {
                if (_disposed) return;
                if (!_index.TryGetValue(hook, out int i))
                {
                    _index[hook] = _order.Count;
                    _order.Add(hook);
                    return;
                }
                for (int step = 1; step < _order.Count; step++)
                {
                    var next = _order[(i + step) % _order.Count];
                    if (_pending.ContainsKey(next)) continue;
                    if (_held + next.Bytes > BudgetBytes) break;
                    _held += next.Bytes;
                    var tcs = new TaskCompletionSource<Tensor?[]>(TaskCreationOptions.RunContinuationsAsynchronously);
                    _pending[next] = tcs;
                    // Rented here, on the calling thread, and filled on the prefetch thread: a buffer the pool must allocate
                    // is allocated by the calling thread (memory allocated by one thread and freed by another stays in the
                    // allocating thread's malloc arena with glibc, keeping the process's RSS high after it is freed).
                    _queue.Add((next, next.Allocate(), tcs));
                }
            }
        }

        /// <summary>The weights read ahead for <paramref name="hook"/> (waiting if the read is under way), or null if none was queued.</summary>
        public Tensor?[]? Take(OffloadHook hook)
        {
            TaskCompletionSource<Tensor?[]>? tcs;
            lock (_lock)
            {
                if (!_pending.Remove(hook, out tcs)) return null;
            }
            try
            {
                if (tcs.Task.IsCompleted)
                {
                    Interlocked.Increment(ref Hits);
                    return tcs.Task.GetAwaiter().GetResult();   // a failed read throws here, in the module's call
                }
                Interlocked.Increment(ref Waits);
                long start = SpanEvents.Requested ? Stopwatch.GetTimestamp() : 0;
                try { return tcs.Task.GetAwaiter().GetResult(); }
                finally { if (start != 0) SpanEvents.Span("offload.wait", hook.Node, hook.Bytes, start, Stopwatch.GetTimestamp()); }
            }
            finally
            {
                lock (_lock) _held -= hook.Bytes;
            }
        }

        private void Run()
        {
            foreach (var (hook, into, result) in _queue.GetConsumingEnumerable())
            {
                long start = SpanEvents.Requested ? Stopwatch.GetTimestamp() : 0;
                try { hook.Fill(into, touch: true); }
                catch (Exception e) { hook.Return(into); result.SetException(e); continue; }
                if (start != 0) SpanEvents.Span("offload.prefetch", hook.Node, hook.Bytes, start, Stopwatch.GetTimestamp());
                result.SetResult(into);
            }
        }

        /// <summary>Stops the thread and disposes what was read ahead and not used.</summary>
        public void Dispose()
        {
            List<(OffloadHook Hook, TaskCompletionSource<Tensor?[]> Read)> left;
            lock (_lock)
            {
                if (_disposed) return;
                _disposed = true;
                left = _pending.Select(p => (p.Key, p.Value)).ToList();
                _pending.Clear();
                _held = 0;
            }
            _queue.CompleteAdding();
            _thread.Join();
            foreach (var (hook, read) in left)
                if (read.Task.Status == TaskStatus.RanToCompletion) hook.Return(read.Task.Result);
            _queue.Dispose();
        }
    }
}
