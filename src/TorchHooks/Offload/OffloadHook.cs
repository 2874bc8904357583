using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using TorchSharp;
using TorchSharp.Modules;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The call-path hook of one offloaded module (Accelerate's <c>AlignDevicesHook(offload=True)</c>, on TorchHooks'
    /// public <see cref="ModelHook"/> seam): between calls the module's own parameters hold no storage (each is
    /// <c>set_</c> to an empty tensor, so the <c>Parameter</c> objects stay the same); <see cref="pre_forward{TArgs}"/>
    /// materialises them — a disk store's aligned tensor is mapped from its file (no copy), any other is read into a
    /// buffer of the offload's <see cref="BufferPool"/> — or takes what the prefetcher prepared, and <c>set_</c>s them
    /// in; <see cref="post_forward{TResult}"/> and <see cref="forward_failed"/> release them again (mappings are unmapped,
    /// buffers go back to the pool). <see cref="detach_hook"/> makes them resident for good (fresh tensors).
    /// </summary>
    /// <remarks>
    /// <para>Inference only: a call with grad enabled is refused naming the module (its gradients would be lost when the weights
    /// are released). While materialised, the parameters have <c>requires_grad</c> off, so libtorch's autocast never caches
    /// a lower-precision cast of them: a later call cannot be served a cast of released storage, and no cast outlives the call.</para>
    /// <para>A pooled buffer is reused for another module's weights after the call: a view of a materialised weight kept past
    /// the call (e.g. <c>weight.detach()</c> stored by a hook) then shows other values; clone what must outlive the call. A
    /// view of a mapped weight keeps its mapping alive (libtorch's storage reference count) and its values.</para>
    /// </remarks>
    internal sealed class OffloadHook : ModelHook
    {
        internal sealed class Slot
        {
            public Parameter Param = null!;
            public string Name = "", Key = "";
            public long[] Shape = Array.Empty<long>();
            public torch.ScalarType DType;
            public bool RequiresGrad;
            public Tensor Empty = null!;
            public bool Mapped;   // materialised by mapping the store's file (no copy) instead of reading into a pooled buffer
            public long Numel => Shape.Aggregate(1L, (a, b) => a * b);
        }

        private readonly WeightStore _store;
        private readonly Prefetcher? _prefetcher;
        private readonly BufferPool _pool;
        private readonly List<Slot> _slots;
        private readonly object _gate = new();
        private int _depth;   // nested or concurrent calls of the same module share one materialisation
        private Tensor?[]? _held;   // what the parameters hold while materialised: pooled buffers and mappings

        internal OffloadHook(HookPoint node, WeightStore store, List<Slot> slots, Prefetcher? prefetcher, BufferPool pool)
        {
            Node = node; Path = node.Path; _store = store; _slots = slots; _prefetcher = prefetcher; _pool = pool;
            Bytes = slots.Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b) * StoredTensor.ElementSize(s.DType, s.Key));
        }

        /// <summary>The module's path.</summary>
        public string Path { get; }

        /// <summary>The module's hook point (spans are published for it).</summary>
        public HookPoint Node { get; }

        /// <summary>The bytes of the module's offloaded parameters.</summary>
        public long Bytes { get; }

        public override void init_hook(torch.nn.Module module)
        {
            using (torch.no_grad())
                foreach (var s in _slots)
                {
                    s.Param.set_(s.Empty);
                    ReleasedParameters.Mark(s.Param, s.Shape);   // counted as the weight it stands for (summary)
                }
        }

        public override TArgs pre_forward<TArgs>(torch.nn.Module module, TArgs args)
        {
            if (torch.is_grad_enabled())
                throw new InvalidOperationException($"Module '{Path}' ({module.GetType().Name}) has offloaded weights, which support inference only: its weights are released after the call, " +
                                                    "so gradients could not reach them. Run the model under torch.no_grad() (or torch.inference_mode()), or dispose the offload handle to make the weights resident and train.");
            lock (_gate)
            {
                if (_depth++ > 0) return args;
                try { Materialize(); }
                catch { _depth--; ReleaseLocked(); throw; }
            }
            _prefetcher?.Entered(this);
            return args;
        }

        public override TResult post_forward<TResult>(torch.nn.Module module, TResult output)
        {
            Release();
            return output;
        }

        public override void forward_failed(torch.nn.Module module) => Release();

        public override void detach_hook(torch.nn.Module module)
        {
            lock (_gate)
            {
                _depth = 0;
                if (_held is { } held) { _held = null; Return(held); }
                using var _ = torch.no_grad();
                foreach (var s in _slots)
                {
                    using var fresh = torch.empty(s.Shape, s.DType, torch.CPU);
                    _store.ReadInto(s.Key, fresh);
                    s.Param.set_(fresh);
                    s.Param.requires_grad_(s.RequiresGrad);
                    ReleasedParameters.Unmark(s.Param);
                    s.Empty.Dispose();
                }
            }
        }

        /// <summary>
        /// What the module's weights will be read into: per slot, a buffer from the pool (one-dimensional), or null for a
        /// mapped slot (<see cref="Slot.Mapped"/>: <see cref="Fill"/> maps it). Give it back with <see cref="Return"/>.
        /// </summary>
        internal Tensor?[] Allocate()
        {
            var result = new Tensor?[_slots.Count];
            try
            {
                for (int i = 0; i < _slots.Count; i++)
                    if (!_slots[i].Mapped) result[i] = _pool.Rent(_slots[i].DType, _slots[i].Numel);
            }
            catch { Return(result); throw; }
            return result;
        }

        /// <summary>Gives what <see cref="Allocate"/> and <see cref="Fill"/> made back: buffers to the pool, mappings freed (nulls skipped).</summary>
        internal void Return(Tensor?[] tensors)
        {
            for (int i = 0; i < tensors.Length; i++)
            {
                var t = tensors[i];
                tensors[i] = null;
                if (t is null) continue;
                if (_slots[i].Mapped) t.Dispose();
                else _pool.Return(t);
            }
        }

        /// <summary>
        /// Reads the module's weights into <paramref name="tensors"/> (from <see cref="Allocate"/>): copies into the pooled
        /// buffers, maps the mapped slots. <paramref name="touch"/> (the prefetch thread): first asks the kernel to read all
        /// the module's bytes in the background (large requests), then reads one byte of every page of each mapping, so its
        /// pages are in memory and mapped before the call needs them.
        /// </summary>
        internal void Fill(Tensor?[] tensors, bool touch)
        {
            if (touch)   // all of the module's bytes requested from the disk at once (nothing to do when they are cached)
                foreach (var slot in _slots) _store.WillNeed(slot.Key);
            for (int i = 0; i < _slots.Count; i++)
            {
                if (_slots[i].Mapped)
                {
                    tensors[i] = _store.Map(_slots[i].Key);
                    if (touch) Touch(tensors[i]!);
                    continue;
                }
                using var shaped = tensors[i]!.view(_slots[i].Shape);
                _store.ReadInto(_slots[i].Key, shaped);
            }
        }

        private static unsafe void Touch(Tensor mapped)
        {
            using var flat = mapped.view(-1);
            long element = mapped.element_size();
            long perChunk = (1L << 30) / element, numel = flat.numel();
            int sum = 0;
            for (long start = 0; start < numel; start += perChunk)
            {
                using var part = flat.narrow(0, start, Math.Min(perChunk, numel - start));
                var span = part.bytes;
                fixed (byte* p = span)
                    for (int at = 0; at < span.Length; at += 4096) sum += Volatile.Read(ref p[at]);
            }
            GC.KeepAlive(sum);
        }

        /// <summary>Reads the module's weights (pooled buffers and mappings).</summary>
        internal Tensor?[] ReadAll()
        {
            var result = Allocate();
            try { Fill(result, touch: false); }
            catch { Return(result); throw; }
            return result;
        }

        private void Materialize()
        {
            long start = SpanEvents.Requested ? Stopwatch.GetTimestamp() : 0;
            var tensors = _prefetcher?.Take(this) ?? ReadAll();
            try
            {
                using var _ = torch.no_grad();
                for (int i = 0; i < _slots.Count; i++)
                {
                    _slots[i].Param.requires_grad_(false);
                    using var shaped = tensors[i]!.view(_slots[i].Shape);
                    _slots[i].Param.set_(shaped);
                }
                _held = tensors;
            }
            catch
            {
                ReleaseLocked();
                Return(tensors);
                throw;
            }
            if (start != 0) SpanEvents.Span("offload.load", Node, Bytes, start, Stopwatch.GetTimestamp());
        }

        private void Release()
        {
            lock (_gate)
            {
                if (_depth == 0 || --_depth > 0) return;
                ReleaseLocked();
            }
        }

        private void ReleaseLocked()
        {
            using (torch.no_grad())
                foreach (var s in _slots)
                {
                    s.Param.set_(s.Empty);
                    s.Param.requires_grad_(s.RequiresGrad);
                }
            // The parameters no longer point at the buffers: the next module's weights may be read into them.
            if (_held is { } held) { _held = null; Return(held); }
        }

        /// <summary>Whether every parameter of the module is released (no storage).</summary>
        internal bool IsReleased => _slots.All(s => s.Param.numel() == 0);

        internal IReadOnlyList<Slot> Slots => _slots;
    }
}
