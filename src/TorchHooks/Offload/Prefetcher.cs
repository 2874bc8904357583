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
        private readonly Dictionary<OffloadHook, Read> _pending = new();
        private readonly BlockingCollection<Read> _queue = new();

        /// <summary>One read ahead: queued (0), taken by the prefetch thread (1), or taken back by the module's call before the thread reached it (2).</summary>
        private sealed class Read
        {
            public readonly OffloadHook Hook;
            public readonly Tensor?[] Into;
            public readonly TaskCompletionSource<Tensor?[]> Result = new(TaskCreationOptions.RunContinuationsAsynchronously);
            public int State;
            public Read(OffloadHook hook, Tensor?[] into) { Hook = hook; Into = into; }
        }
        private readonly Thread _thread;
        private long _held;
        private bool _disposed;

        public Prefetcher(long budgetBytes)
        {
            BudgetBytes = budgetBytes;
            _thread = new Thread(Run) { IsBackground = true, Name = "TorchHooks offload prefetch" };
            _thread.Start();
        }

        /// <summary>A call never takes back a read the thread has not started: it waits (tests: <see cref="OffloadOptions.WaitForReadsAhead"/>).</summary>
        public bool WaitForReadsAhead { get; init; }

        /// <summary>Tests only: the thread waits for it before each read ahead (<see cref="OffloadOptions.PrefetchGate"/>).</summary>
        public ManualResetEventSlim? Gate { get; init; }

        /// <summary>The most bytes read ahead and not yet used.</summary>
        public long BudgetBytes { get; }

        /// <summary>
        /// Modules served from a finished read ahead; those that waited for one under way; and those whose read ahead had not
        /// started when they were called, which read their weights themselves (no wait for the prefetch thread to be scheduled).
        /// </summary>
        public int Hits, Waits, Misses;

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
                    // Rented here, on the calling thread, and filled on the prefetch thread: a buffer the pool must allocate
                    // is allocated by the calling thread (memory allocated by one thread and freed by another stays in the
                    // allocating thread's malloc arena with glibc, keeping the process's RSS high after it is freed).
                    var read = new Read(next, next.Allocate());
                    _pending[next] = read;
                    _queue.Add(read);
                }
            }
        }

        /// <summary>
        /// The weights read ahead for <paramref name="hook"/> (waiting if the read is under way; reading them here if the
        /// prefetch thread has not started it), or null if none was queued.
        /// </summary>
        public Tensor?[]? Take(OffloadHook hook)
        {
            Read? read;
            lock (_lock)
            {
                if (!_pending.Remove(hook, out read)) return null;
            }
            try
            {
                if (read.Result.Task.IsCompleted)
                {
                    Interlocked.Increment(ref Hits);
                    return read.Result.Task.GetAwaiter().GetResult();   // a failed read throws here, in the module's call
                }
                if (!WaitForReadsAhead && Interlocked.CompareExchange(ref read.State, 2, 0) == 0)
                {
                    Interlocked.Increment(ref Misses);
                    try { hook.Fill(read.Into, touch: false); }
                    catch { hook.Return(read.Into); throw; }
                    return read.Into;
                }
                Interlocked.Increment(ref Waits);
                long start = SpanEvents.Requested ? Stopwatch.GetTimestamp() : 0;
                try { return read.Result.Task.GetAwaiter().GetResult(); }
                finally { if (start != 0) SpanEvents.Span("offload.wait", hook.Node, hook.Bytes, start, Stopwatch.GetTimestamp()); }
            }
            finally
            {
                lock (_lock) _held -= hook.Bytes;
            }
        }

        private void Run()
        {
            foreach (var read in _queue.GetConsumingEnumerable())
            {
                Gate?.Wait();
                if (Interlocked.CompareExchange(ref read.State, 1, 0) != 0) continue;   // the module's call took it back and read it itself
                long start = SpanEvents.Requested ? Stopwatch.GetTimestamp() : 0;
                try { read.Hook.Fill(read.Into, touch: true); }
                catch (Exception e) { read.Hook.Return(read.Into); read.Result.SetException(e); continue; }
                if (start != 0) SpanEvents.Span("offload.prefetch", read.Hook.Node, read.Hook.Bytes, start, Stopwatch.GetTimestamp());
                read.Result.SetResult(read.Into);
            }
        }

        /// <summary>Stops the thread and disposes what was read ahead and not used.</summary>
        public void Dispose()
        {
            List<Read> left;
            lock (_lock)
            {
                if (_disposed) return;
                _disposed = true;
                left = _pending.Values.ToList();
                _pending.Clear();
                _held = 0;
            }
            _queue.CompleteAdding();
            _thread.Join();
            foreach (var read in left)
                if (read.Result.Task.Status == TaskStatus.RanToCompletion) read.Hook.Return(read.Result.Task.Result);
            _queue.Dispose();
        }
    }
}
