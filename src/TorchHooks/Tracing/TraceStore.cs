using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A <see cref="ModuleTracer"/>'s memory: one fixed-size <see cref="CallEntry"/> per recorded call and one
    /// <see cref="TensorSlot"/> per tensor seen, in chunks of <see cref="ChunkSize"/> that are allocated as the trace
    /// grows and never move. Recording a call writes plain values into its reserved entry (no object, no string, no
    /// lock: a slot is reserved with one interlocked add); <see cref="ModuleCallRecord"/> objects, with their strings
    /// and shape arrays, are built only when the trace is read (<see cref="ModuleTracer.Calls"/>).
    /// </summary>
    /// <remarks>
    /// Entries are published by writing <see cref="CallEntry.Node"/> last (volatile) when a call begins and
    /// <see cref="CallEntry.End"/> last when it ends; readers skip entries not yet published and treat an entry
    /// with no end as still running. <see cref="ModuleTracer.Clear"/> swaps in a new store (a new
    /// <see cref="Generation"/>): a call that began before the clear ends into the old store, unseen.
    /// </remarks>
    internal sealed class TraceStore
    {
        public const int ChunkBits = 8;   // 256 entries: chunks stay far below the large-object heap's 85,000 bytes
        public const int ChunkSize = 1 << ChunkBits;
        private const int ChunkMask = ChunkSize - 1;

        public readonly int Generation;
        private CallEntry[]?[] _calls = new CallEntry[]?[8];
        private TensorSlot[]?[] _tensors = new TensorSlot[]?[8];
        private long _callCount;
        private long _tensorCount;
        private readonly object _grow = new();
        private readonly List<ModuleCallRecord?> _records = new();   // built records of finished calls, by id (readers only, under the lock)

        public TraceStore(int generation) => Generation = generation;

        /// <summary>How many calls were reserved (recorded or dropped).</summary>
        public long Reserved => Volatile.Read(ref _callCount);

        /// <summary>Reserves the next call id.</summary>
        public long ReserveCall() => Interlocked.Increment(ref _callCount) - 1;

        /// <summary>Reserves <paramref name="count"/> consecutive tensor slots; returns the first.</summary>
        public long ReserveTensors(int count) => Interlocked.Add(ref _tensorCount, count) - count;

        /// <summary>The entry of call <paramref name="id"/> (reserved), created on first use.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public ref CallEntry Call(long id)
        {
            var dir = Volatile.Read(ref _calls);
            long c = id >> ChunkBits;
            if (c < dir.Length && dir[c] is { } chunk) return ref chunk[id & ChunkMask];
            return ref Chunk(ref _calls, c)[id & ChunkMask];
        }

        /// <summary>The slot of tensor <paramref name="index"/> (reserved), created on first use.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public ref TensorSlot Tensor(long index)
        {
            var dir = Volatile.Read(ref _tensors);
            long c = index >> ChunkBits;
            if (c < dir.Length && dir[c] is { } chunk) return ref chunk[index & ChunkMask];
            return ref Chunk(ref _tensors, c)[index & ChunkMask];
        }

        private T[] Chunk<T>(ref T[]?[] directory, long c)
        {
            lock (_grow)
            {
                var dir = directory;
                if (c >= dir.Length)
                {
                    var bigger = new T[]?[Math.Max(dir.Length * 2, c + 1)];
                    Array.Copy(dir, bigger, dir.Length);
                    dir = bigger;
                }
                var chunk = dir[c] ??= new T[ChunkSize];
                Volatile.Write(ref directory, dir);
                return chunk;
            }
        }

        /// <summary>A copy of call <paramref name="id"/>'s entry if it was published (its call began and was recorded).</summary>
        public bool TryRead(long id, out CallEntry entry)
        {
            var dir = Volatile.Read(ref _calls);
            long c = id >> ChunkBits;
            if (c < dir.Length && dir[c] is { } chunk)
            {
                ref var e = ref chunk[id & ChunkMask];
                long end = Volatile.Read(ref e.End);
                if (Volatile.Read(ref e.Node) is not null)
                {
                    entry = e;
                    entry.End = end;     // the end read first: the outputs written before it are in the copy
                    return true;
                }
            }
            entry = default;
            return false;
        }

        /// <summary>The tensors of slots [<paramref name="at"/>, <paramref name="at"/> + <paramref name="count"/>) as <see cref="TensorInfo"/>s.</summary>
        public TensorInfo[] Infos(long at, int count)
        {
            if (count == 0) return Array.Empty<TensorInfo>();
            var infos = new TensorInfo[count];
            for (int i = 0; i < count; i++) infos[i] = Tensor(at + i).ToInfo();
            return infos;
        }

        /// <summary>The record of call <paramref name="id"/> (built once its call has finished, then reused).</summary>
        public ModuleCallRecord Record(ModuleTracer tracer, long id, in CallEntry e)
        {
            lock (_records)
            {
                if (id < _records.Count && _records[(int)id] is { } built) return built;
                var record = new ModuleCallRecord(tracer, (int)id, e, Infos(e.InputsAt, e.InputCount),
                    e.End == 0 ? Array.Empty<TensorInfo>() : Infos(e.OutputsAt, e.OutputCount));
                if (e.End != 0)
                {
                    while (_records.Count <= id) _records.Add(null);
                    _records[(int)id] = record;
                }
                return record;
            }
        }

        /// <summary>
        /// Describes the tensors in <paramref name="value"/> (a tensor, or the tensors of a tuple or list, in order)
        /// into newly reserved slots: <paramref name="at"/> is the first, <paramref name="count"/> how many.
        /// </summary>
        public void Describe<T>(in T value, out long at, out int count)
        {
            if (value is Tensor t)
            {
                if (t.IsInvalid) { at = 0; count = 0; return; }
                at = ReserveTensors(1);
                Tensor(at).Write(t);
                count = 1;
                return;
            }
            DescribeMany(value, out at, out count);
        }

        private void DescribeMany(object? value, out long at, out int count)
        {
            at = 0; count = 0;
            switch (value)
            {
                case ITuple tuple:
                {
                    for (int i = 0; i < tuple.Length; i++) if (tuple[i] is Tensor ti && !ti.IsInvalid) count++;
                    if (count == 0) return;
                    at = ReserveTensors(count);
                    int k = 0;
                    for (int i = 0; i < tuple.Length && k < count; i++)
                        if (tuple[i] is Tensor ti && !ti.IsInvalid) Tensor(at + k++).Write(ti);
                    return;
                }
                case IEnumerable<Tensor> many:
                {
                    var list = new List<Tensor>();
                    foreach (var ti in many) if (ti is not null && !ti.IsInvalid) list.Add(ti);
                    Describe(list, out at, out count);
                    return;
                }
            }
        }

        private void Describe(List<Tensor> list, out long at, out int count)
        {
            count = list.Count;
            at = count == 0 ? 0 : ReserveTensors(count);
            for (int i = 0; i < count; i++) Tensor(at + i).Write(list[i]);
        }
    }

    /// <summary>One recorded call, as the tracer writes it: plain values, no strings built (see <see cref="TraceStore"/>).</summary>
    internal struct CallEntry
    {
        /// <summary>The module's node (path, module, type); null until the entry is published.</summary>
        public HookPoint? Node;
        public string? ThreadName;
        public long Start;
        /// <summary>The end timestamp; 0 while the call runs.</summary>
        public long End;
        public long InputsAt;
        public long OutputsAt;
        public int InputCount;
        public int OutputCount;
        public int ParentId;
        public int Depth;
        public int CallIndex;
        public int ThreadId;
        /// <summary>Autocast dtypes in force (<see cref="torch.ScalarType"/> values), -1 when off.</summary>
        public sbyte AutocastCpu;
        public sbyte AutocastCuda;
        public bool Training;
        public bool Failed;
        public bool Backward;
    }

    /// <summary>The sizes of a tensor of rank ≤ <see cref="TensorNative.MaxRank"/>, inline.</summary>
    [InlineArray(TensorNative.MaxRank)]
    internal struct InlineSizes
    {
        private long _first;
    }

    /// <summary>One tensor as the tracer read it: rank, dtype, device, grad flag, sizes (inline up to rank 8).</summary>
    internal struct TensorSlot
    {
        public TensorHeader Header;
        public InlineSizes Sizes;
        public long[]? AllSizes;   // rank > TensorNative.MaxRank

        public void Write(Tensor t)
        {
            TensorNative.Read(t, out Header, Sizes);
            if (Header.Rank > TensorNative.MaxRank)
            {
                var all = new long[Header.Rank];
                TensorNative.Read(t, out _, all);
                AllSizes = all;
            }
            else AllSizes = null;
        }

        public TensorInfo ToInfo()
        {
            ReadOnlySpan<long> sizes = AllSizes ?? ((ReadOnlySpan<long>)Sizes).Slice(0, Header.Rank);
            return new TensorInfo(Header, sizes);
        }
    }
}
