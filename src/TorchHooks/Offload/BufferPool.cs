using System;
using System.Collections.Generic;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The reusable storage offloaded weights are read into: one-dimensional CPU tensors kept by dtype and element count,
    /// so a module's weights are materialised by a copy into pages that were faulted in on the first pass, not into fresh
    /// allocations (with <see cref="FreedMemory"/>'s 1 MiB mmap threshold every fresh weight-sized block is mapped and
    /// page-faulted anew: measured 7–11 ms of a 16.8 MB layer's 10–12 ms read, <c>--offload-probe</c>'s profile). The pool
    /// keeps at most <see cref="CapacityBytes"/> (the prefetch budget plus the largest module: what is read ahead plus what
    /// one call holds); a rent beyond it still succeeds (nested offloaded modules hold several at once) and what is
    /// returned beyond it is freed, free buffers of other sizes first. Thread-safe (rented on calling threads, filled on
    /// the prefetch thread).
    /// </summary>
    internal sealed class BufferPool : IDisposable
    {
        private readonly object _gate = new();
        private readonly Dictionary<(torch.ScalarType, long), Stack<Tensor>> _free = new();
        private long _ownedBytes, _freeBytes;
        private bool _disposed;

        public BufferPool(long capacityBytes) { CapacityBytes = capacityBytes; }

        /// <summary>The most bytes the pool keeps (in use and free).</summary>
        public long CapacityBytes { get; }

        /// <summary>Bytes of the buffers the pool owns now (rented and free).</summary>
        public long OwnedBytes { get { lock (_gate) return _ownedBytes; } }

        /// <summary>Buffers allocated, and rents served by a kept buffer (tests, diagnostics).</summary>
        public int Allocated, Reused;

        /// <summary>A one-dimensional CPU tensor of <paramref name="numel"/> elements of <paramref name="dtype"/> (contents undefined); give it back with <see cref="Return"/>.</summary>
        public Tensor Rent(torch.ScalarType dtype, long numel)
        {
            long bytes = numel * StoredTensor.ElementSize(dtype, "an offloaded tensor");
            lock (_gate)
            {
                if (_disposed) throw new ObjectDisposedException(nameof(BufferPool), "The offload was disposed.");
                if (_free.TryGetValue((dtype, numel), out var stack) && stack.Count > 0)
                {
                    _freeBytes -= bytes;
                    Reused++;
                    return stack.Pop();
                }
                // Room for a new one: free kept buffers of other sizes first (the pool holds what the next calls need).
                TrimLocked(CapacityBytes - bytes);
                _ownedBytes += bytes;
                Allocated++;
            }
            try { return torch.empty(numel, dtype, torch.CPU); }
            catch { lock (_gate) _ownedBytes -= bytes; throw; }
        }

        /// <summary>Gives <paramref name="buffer"/> (from <see cref="Rent"/>) back: kept for the next rent while the pool is within its capacity, freed otherwise.</summary>
        public void Return(Tensor buffer)
        {
            long bytes = buffer.numel() * StoredTensor.ElementSize(buffer.dtype, "an offloaded tensor");
            lock (_gate)
            {
                if (!_disposed)
                {
                    if (_ownedBytes > CapacityBytes) TrimLocked(CapacityBytes);
                    if (_ownedBytes <= CapacityBytes)
                    {
                        var key = (buffer.dtype, buffer.numel());
                        if (!_free.TryGetValue(key, out var stack)) _free[key] = stack = new Stack<Tensor>();
                        stack.Push(buffer);
                        _freeBytes += bytes;
                        return;
                    }
                }
                _ownedBytes -= bytes;
            }
            buffer.Dispose();
        }

        /// <summary>Frees kept buffers until the pool owns at most <paramref name="target"/> bytes (or none is left free).</summary>
        private void TrimLocked(long target)
        {
            foreach (var stack in _free.Values)
                while (_ownedBytes > target && stack.Count > 0)
                {
                    var t = stack.Pop();
                    long bytes = t.numel() * StoredTensor.ElementSize(t.dtype, "an offloaded tensor");
                    _ownedBytes -= bytes;
                    _freeBytes -= bytes;
                    t.Dispose();
                }
        }

        /// <summary>Frees the kept buffers; buffers still rented are freed when returned.</summary>
        public void Dispose()
        {
            lock (_gate)
            {
                _disposed = true;
                foreach (var stack in _free.Values)
                    while (stack.Count > 0) stack.Pop().Dispose();
                _free.Clear();
                _ownedBytes -= _freeBytes;
                _freeBytes = 0;
            }
        }
    }
}
