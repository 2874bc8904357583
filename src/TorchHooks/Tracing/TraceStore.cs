using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A <see cref="ModuleTracer"/>'s memory: one fixed-size <see cref="CallEntry"/> per recorded call and one
    /// <see cref="TensorSlot"/> per tensor seen, in chunks of <see cref="ChunkSize"/> that are allocated as the trace
    /// grows. Recording a call writes plain values into its reserved entry (no object, no string, no lock: a slot is
    /// reserved with one interlocked add); <see cref="ModuleCallRecord"/> objects, with their strings and shape arrays,
    /// are built only when the trace is read (<see cref="ModuleTracer.Calls"/>). Entries and slots hold no object
    /// references (the module is an index into the tracer's node table, the thread's name is kept once per thread),
    /// so their chunks are native memory (zeroed, freed when the store is collected): the garbage collector neither
    /// allocates, copies nor scans them — on the managed heap a growing trace cost hundreds of nanoseconds per call in
    /// collections (measured with <c>--tracing-paired</c>).
    /// </summary>
    /// <remarks>
    /// Entries are published by writing <see cref="CallEntry.Node"/> (index + 1) last (volatile) when a call begins and
    /// <see cref="CallEntry.End"/> last when it ends; readers skip entries not yet published and treat an entry
    /// with no end as still running. <see cref="ModuleTracer.Clear"/> swaps in a new store (a new
    /// <see cref="Generation"/>): a call that began before the clear ends into the old store, unseen.
    /// </remarks>
    internal sealed unsafe class TraceStore
    {
        public const int ChunkBits = 10;   // 1,024 entries: 72 KiB and 48 KiB chunks, below malloc's mmap threshold (reused, no page faults)
        public const int ChunkSize = 1 << ChunkBits;
        private const int ChunkMask = ChunkSize - 1;

        public readonly int Generation;
        private IntPtr[] _calls = new IntPtr[8];     // chunks of ChunkSize CallEntry, native memory
        private IntPtr[] _tensors = new IntPtr[8];   // chunks of ChunkSize TensorSlot
        private long _callCount;
        private long _tensorCount;
        private readonly object _grow = new();
        private readonly List<ModuleCallRecord?> _records = new();   // built records of finished calls, by id (readers only, under the lock)
        private readonly List<long[]> _longShapes = new();           // sizes of tensors of rank > InlineRank (rare), under the lock
        private readonly Dictionary<int, string?> _threadNames = new();
        [ThreadStatic] private static long t_named;                  // the id of the store that knows this thread's name (no reference: nothing kept alive)
        private static long s_lastId;
        private readonly long _id = Interlocked.Increment(ref s_lastId);

        public TraceStore(int generation) => Generation = generation;

        /// <summary>How many calls were reserved (recorded or dropped).</summary>
        public long Reserved => Volatile.Read(ref _callCount);

        /// <summary>Reserves the next call id.</summary>
        public long ReserveCall() => Interlocked.Increment(ref _callCount) - 1;

        /// <summary>Reserves <paramref name="count"/> consecutive tensor slots; returns the first.</summary>
        public long ReserveTensors(int count) => Interlocked.Add(ref _tensorCount, count) - count;

        /// <summary>The entry of call <paramref name="id"/> (reserved), created on first use.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public ref CallEntry Call(long id) => ref At<CallEntry>(ref _calls, id);

        /// <summary>The slot of tensor <paramref name="index"/> (reserved), created on first use.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public ref TensorSlot Tensor(long index) => ref At<TensorSlot>(ref _tensors, index);

        /// <summary>Element <paramref name="index"/> of the chunked native array whose chunk directory is <paramref name="directory"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private ref T At<T>(ref IntPtr[] directory, long index) where T : unmanaged
        {
            var dir = Volatile.Read(ref directory);
            long c = index >> ChunkBits;
            var chunk = c < dir.Length ? dir[c] : IntPtr.Zero;
            if (chunk == IntPtr.Zero) chunk = Chunk(ref directory, c, sizeof(T));
            return ref ((T*)chunk)[index & ChunkMask];
        }

        private IntPtr Chunk(ref IntPtr[] directory, long c, int size)
        {
            lock (_grow)
            {
                var dir = directory;
                if (c >= dir.Length)
                {
                    var bigger = new IntPtr[Math.Max(dir.Length * 2, c + 1)];
                    Array.Copy(dir, bigger, dir.Length);
                    dir = bigger;
                }
                if (dir[c] == IntPtr.Zero) dir[c] = (IntPtr)NativeMemory.AllocZeroed((nuint)ChunkSize, (nuint)size);
                Volatile.Write(ref directory, dir);
                return dir[c];
            }
        }

        /// <summary>Frees the chunks (the store is unreachable: no call can be writing into it).</summary>
        ~TraceStore()
        {
            foreach (var chunk in _calls) if (chunk != IntPtr.Zero) NativeMemory.Free((void*)chunk);
            foreach (var chunk in _tensors) if (chunk != IntPtr.Zero) NativeMemory.Free((void*)chunk);
        }

        /// <summary>A copy of call <paramref name="id"/>'s entry if it was published (its call began and was recorded).</summary>
        public bool TryRead(long id, out CallEntry entry)
        {
            var dir = Volatile.Read(ref _calls);
            long c = id >> ChunkBits;
            if (c < dir.Length && dir[c] != IntPtr.Zero)
            {
                ref var e = ref ((CallEntry*)dir[c])[id & ChunkMask];
                long end = Volatile.Read(ref e.End);
                if (Volatile.Read(ref e.Node) != 0)
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
            for (int i = 0; i < count; i++)
            {
                ref var slot = ref Tensor(at + i);
                if (slot.LongShape > 0)
                {
                    long[] sizes;
                    lock (_longShapes) sizes = _longShapes[slot.LongShape - 1];
                    infos[i] = new TensorInfo(slot.Header, sizes);
                }
                else infos[i] = new TensorInfo(slot.Header, ((ReadOnlySpan<long>)slot.Sizes).Slice(0, slot.Header.Rank));
            }
            return infos;
        }

        /// <summary>Notes the calling thread's id and name, once per thread and store (a thread's name as first seen).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Thread()
        {
            var thread = System.Threading.Thread.CurrentThread;
            if (t_named != _id) NameThread(thread);
            return thread.ManagedThreadId;
        }

        private void NameThread(System.Threading.Thread thread)
        {
            lock (_threadNames) _threadNames.TryAdd(thread.ManagedThreadId, thread.Name);
            t_named = _id;
        }

        public string? ThreadName(int threadId)
        {
            lock (_threadNames) return _threadNames.TryGetValue(threadId, out var name) ? name : null;
        }

        /// <summary>The record of call <paramref name="id"/> (built once its call has finished, then reused).</summary>
        public ModuleCallRecord Record(ModuleTracer tracer, long id, in CallEntry e)
        {
            lock (_records)
            {
                if (id < _records.Count && _records[(int)id] is { } built) return built;
                var record = new ModuleCallRecord(tracer, (int)id, e, tracer.NodeAt(e.Node), ThreadName(e.ThreadId), Infos(e.InputsAt, e.InputCount),
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
                Write(ref Tensor(at), t);
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
                        if (tuple[i] is Tensor ti && !ti.IsInvalid) Write(ref Tensor(at + k++), ti);
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
            for (int i = 0; i < count; i++) Write(ref Tensor(at + i), list[i]);
        }

        private void Write(ref TensorSlot slot, Tensor t)
        {
            TensorNative.Read(t, out slot.Header, slot.Sizes);
            if (slot.Header.Rank > TensorSlot.InlineRank)
            {
                var all = new long[slot.Header.Rank];
                TensorNative.Read(t, out _, all);
                lock (_longShapes) { _longShapes.Add(all); slot.LongShape = _longShapes.Count; }
            }
            else slot.LongShape = 0;
        }
    }

    /// <summary>One recorded call, as the tracer writes it: plain values, no references (see <see cref="TraceStore"/>).</summary>
    internal struct CallEntry
    {
        /// <summary>The module's node: 1 + its index in the tracer's node table; 0 until the entry is published.</summary>
        public int Node;
        public int ThreadId;
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
        /// <summary>Autocast dtypes in force (<see cref="torch.ScalarType"/> values), -1 when off.</summary>
        public sbyte AutocastCpu;
        public sbyte AutocastCuda;
        public bool Training;
        public bool Failed;
        public bool Backward;
        public bool Recompute;
    }

    /// <summary>The sizes of a tensor of rank ≤ <see cref="TensorSlot.InlineRank"/>, inline.</summary>
    [InlineArray(TensorSlot.InlineRank)]
    internal struct InlineSizes
    {
        private long _first;
    }

    /// <summary>One tensor as the tracer read it: rank, dtype, device, grad flag, sizes (inline up to rank 4).</summary>
    internal struct TensorSlot
    {
        public const int InlineRank = 4;
        public TensorHeader Header;
        public InlineSizes Sizes;
        /// <summary>Rank above <see cref="InlineRank"/>: 1 + the index of the sizes in the store's list; else 0.</summary>
        public int LongShape;
    }
}
