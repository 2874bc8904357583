using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>Which modules to offload and how far to read ahead (<see cref="OffloadExtensions.Offload"/>).</summary>
    public sealed class OffloadOptions
    {
        /// <summary>The modules whose own parameters are offloaded, asked for each module that has parameters of its own (default: all of them).</summary>
        public Func<HookPoint, bool>? Modules { get; init; }

        /// <summary>
        /// Prefetch: the most bytes of weights read ahead, on a background thread, for the modules that come next in call
        /// order (learned from the first pass). 0 (the default): no prefetch, each module reads its weights when called.
        /// Must hold the largest offloaded module if not 0. Mapped weights are read ahead by touching each page of their
        /// mapping (the pages are then in memory and mapped when the call needs them); copied ones by reading them into
        /// pooled buffers. Prefetch uses one background thread, named <c>TorchHooks offload prefetch</c>.
        /// </summary>
        public long PrefetchBytes { get; init; }

        /// <summary>
        /// Tests only: a call whose read ahead has not started waits for the prefetch thread instead of reading its
        /// weights itself, so that what the thread does is deterministic on a loaded machine.
        /// </summary>
        internal bool WaitForReadsAhead { get; init; }

        /// <summary>Tests only: the prefetch thread waits for this gate before each read ahead (a call then takes its read back).</summary>
        internal System.Threading.ManualResetEventSlim? PrefetchGate { get; init; }

        /// <summary>
        /// Linux/glibc: fix malloc's mmap threshold at 1 MiB (process-wide, from the first offload on) so released weights
        /// leave the RSS at once instead of staying in the heap (see docs/offload.md, "Memory"). Default true.
        /// </summary>
        public bool ReturnFreedMemory { get; init; } = true;

        /// <summary>
        /// Disk stores: materialise a weight by mapping its bytes in the store's file (private mapping, no copy; the pages
        /// are the page cache's) instead of copying them into a reusable buffer. Default true. Applies to every tensor whose
        /// offset in its file is a multiple of its element size (always in safetensors files written by the safetensors
        /// library, which pads the header to 8 bytes, and in Accelerate's offload folders); others, and host stores, are
        /// copied. A store file must not be truncated or rewritten while the offload runs: its size is checked before each
        /// mapping, but a file truncated under a mapping makes the process fault (SIGBUS) where a copy would throw. See
        /// docs/offload.md, "What is mapped, what is copied".
        /// </summary>
        public bool MapWeights { get; init; } = true;
    }

    /// <summary>An offloaded model's handle: what is offloaded, prefetch counters; dispose to make the weights resident again.</summary>
    public sealed class OffloadHandle : IDisposable
    {
        private readonly List<RemovableHandle> _hooks;
        private readonly Prefetcher? _prefetcher;
        private readonly BufferPool _pool;
        private readonly List<OffloadHook> _modules;
        private bool _disposed;

        internal OffloadHandle(List<RemovableHandle> hooks, List<OffloadHook> modules, Prefetcher? prefetcher, BufferPool pool)
        {
            _hooks = hooks; _modules = modules; _prefetcher = prefetcher; _pool = pool;
        }

        /// <summary>
        /// The most bytes of reusable buffers the offload keeps for materialising weights (<see cref="OffloadOptions.PrefetchBytes"/>
        /// plus <see cref="LargestModuleBytes"/>): after the first pass they stay allocated between calls, so later calls
        /// copy weights into memory that is already paged in.
        /// </summary>
        public long BufferPoolBytes => _pool.CapacityBytes;

        /// <summary>Buffers allocated by the pool so far, and materialisations served by a kept buffer (per tensor).</summary>
        public (int Allocated, int Reused) BufferPoolCounts => (_pool.Allocated, _pool.Reused);

        /// <summary>The offloaded modules' paths.</summary>
        public IReadOnlyList<string> Paths => _modules.Select(m => m.Path).ToList();

        /// <summary>The bytes of all offloaded parameters.</summary>
        public long OffloadedBytes => _modules.Sum(m => m.Bytes);

        /// <summary>The bytes of the largest offloaded module (what one call materialises).</summary>
        public long LargestModuleBytes => _modules.Count == 0 ? 0 : _modules.Max(m => m.Bytes);

        /// <summary>Calls served from a finished read ahead.</summary>
        public int PrefetchHits => _prefetcher?.Hits ?? 0;

        /// <summary>Calls that waited for a read ahead under way.</summary>
        public int PrefetchWaits => _prefetcher?.Waits ?? 0;

        /// <summary>Calls whose read ahead was queued but not started by the prefetch thread: they read their weights themselves.</summary>
        public int PrefetchMisses => _prefetcher?.Misses ?? 0;

        /// <summary>Whether no offloaded module holds its weights now (between calls: always).</summary>
        public bool AllReleased => _modules.All(m => m.IsReleased);

        /// <summary>Removes the offload: stops prefetching, and reads every offloaded module's weights back (resident; needs their memory). Dispose it before the store.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _prefetcher?.Dispose();
            var errors = new List<Exception>();
            foreach (var h in _hooks)
            {
                try { h.Dispose(); }
                catch (Exception e) { errors.Add(e); }
            }
            _pool.Dispose();
            if (errors.Count > 0) throw new AggregateException("Making offloaded weights resident again failed for some modules.", errors);
        }
    }

    /// <summary>Weight offload for a wrapped model (Accelerate's <c>disk_offload</c> / <c>cpu_offload</c>, with prefetch).</summary>
    public static class OffloadExtensions
    {
        /// <summary>
        /// Offloads the model's weights to <paramref name="store"/>: each selected module's own parameters are released now
        /// (the same <c>Parameter</c> objects, with no storage) and materialised from the store only during its calls
        /// (<see cref="OffloadHook"/>, on the public <see cref="ModelHook"/> seam). Buffers stay resident (a buffer still on
        /// <c>meta</c> is read from the store once). Works on an empty model (<see cref="EmptyWeights.Scope"/>): its
        /// parameters never get memory beyond one module's. Inference only.
        /// </summary>
        /// <exception cref="ArgumentException">A parameter missing from the store or of another shape or dtype, a parameter
        /// shared by two offloaded modules, a <c>meta</c> tensor that would stay without data, or a prefetch budget below the
        /// largest module; nothing was changed.</exception>
        public static OffloadHandle Offload(this IHookedModule model, WeightStore store, OffloadOptions? options = null)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Offload on a facade from WithHooks().");
            if (store is null) throw new ArgumentNullException(nameof(store), "Pass a store: WeightStore.Disk(Checkpoint.Open(path)) or WeightStore.Host(model.StateDict()).");
            options ??= new OffloadOptions();
            if (options.PrefetchBytes < 0) throw new ArgumentOutOfRangeException(nameof(options), $"PrefetchBytes is {options.PrefetchBytes}; pass 0 (no prefetch) or a byte budget.");

            // 1. Plan and check everything; nothing moves before all is known good.
            var problems = new List<string>();
            var planned = new List<(HookPoint Node, List<OffloadHook.Slot> Slots, List<(string Name, Tensor Meta)> MetaParams)>();
            var metaBuffers = new List<(torch.nn.Module Module, string Name, Tensor Buffer, string Key)>();
            var owner = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance);
            foreach (var path in model.Paths)
            {
                var node = model[path];
                var module = node.Module;
                string prefix = path.Length == 0 ? "" : path + ".";
                var own = module.named_parameters(recurse: false).ToList();
                bool selected = own.Count > 0 && (options.Modules?.Invoke(node) ?? true);
                foreach (var (name, b) in module.named_buffers(recurse: false))
                {
                    if (b.device_type != DeviceType.META) continue;
                    if (store.Contains(prefix + name) && Matches(store, prefix + name, b, problems)) metaBuffers.Add((module, name, b, prefix + name));
                    else if (!store.Contains(prefix + name)) problems.Add($"buffer '{prefix + name}' is on meta (no data) and the store has no '{prefix + name}'");
                }
                if (!selected || own.Count == 0)
                {
                    foreach (var (name, p) in own)
                        if (p.device_type == DeviceType.META) problems.Add($"parameter '{prefix + name}' is on meta (no data) but its module '{path}' is not offloaded: offload it, or load it first (load_state_dict)");
                    continue;
                }
                var slots = new List<OffloadHook.Slot>();
                var metas = new List<(string, Tensor)>();
                foreach (var (name, p) in own)
                {
                    string key = prefix + name;
                    if (owner.TryGetValue(p, out var other)) { problems.Add($"parameter '{key}' is the same tensor as '{other}' (tied weights): offload only one of the two modules, or untie them"); continue; }
                    owner[p] = key;
                    if (!store.Contains(key)) { problems.Add($"parameter '{key}' is not in the store"); continue; }
                    if (!Matches(store, key, p, problems)) continue;
                    slots.Add(new OffloadHook.Slot { Param = p, Name = name, Key = key, Shape = p.shape, DType = p.dtype, RequiresGrad = p.requires_grad, Mapped = options.MapWeights && store.CanMap(key) });
                    if (p.device_type == DeviceType.META) metas.Add((name, p));
                    else if (p.device_type != DeviceType.CPU) problems.Add($"parameter '{key}' is on {p.device}; offload executes on the CPU here (device maps are not built yet)");
                }
                planned.Add((node, slots, metas));
            }
            long largest = planned.Count == 0 ? 0 : planned.Max(p => p.Slots.Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b) * StoredTensor.ElementSize(s.DType, s.Key)));
            if (options.PrefetchBytes > 0 && options.PrefetchBytes < largest)
                problems.Add($"PrefetchBytes ({options.PrefetchBytes}) is below the largest offloaded module ({largest} bytes), which could never be read ahead: raise it to at least {largest}, or pass 0 for no prefetch");
            if (problems.Count > 0)
                throw new ArgumentException($"Cannot offload {model.Unwrap().GetType().Name} to the store ({store}); nothing was changed:\n  " + string.Join("\n  ", problems), nameof(store));

            // 2. Apply: meta buffers read once; meta parameters get storage-less CPU Parameters (libtorch cannot move a meta
            //    tensor in place); then one hook per module (its init_hook releases the weights).
            using (torch.no_grad())
            {
                foreach (var (module, name, buffer, key) in metaBuffers)
                {
                    var data = torch.empty(buffer.shape, buffer.dtype, torch.CPU);
                    store.ReadInto(key, data);
                    ModuleSlots.Replace(module, name, buffer, data, isParameter: false);
                }
                foreach (var (node, slots, metas) in planned)
                    foreach (var (name, meta) in metas)
                    {
                        var slot = slots.First(s => ReferenceEquals(s.Param, meta));
                        slot.Param = new Parameter(torch.empty(0, meta.dtype, torch.CPU), meta.requires_grad);
                        ModuleSlots.Replace(node.Module, name, meta, slot.Param, isParameter: true);
                    }
            }
            if (options.ReturnFreedMemory) FreedMemory.ReturnLargeBlocksToOs();
            var pool = new BufferPool(options.PrefetchBytes + largest);   // what is read ahead plus what one call holds
            var prefetcher = options.PrefetchBytes > 0 ? new Prefetcher(options.PrefetchBytes) { WaitForReadsAhead = options.WaitForReadsAhead, Gate = options.PrefetchGate } : null;
            var hooks = new List<OffloadHook>();
            var handles = new List<RemovableHandle>();
            try
            {
                foreach (var (node, slots, _) in planned)
                {
                    foreach (var s in slots) s.Empty = torch.empty(0, s.DType, torch.CPU);
                    var hook = new OffloadHook(node, store, slots, prefetcher, pool);
                    handles.Add(node.add_hook_to_module(hook, append: true));
                    hooks.Add(hook);
                }
            }
            catch
            {
                foreach (var h in handles) h.Dispose();
                prefetcher?.Dispose();
                pool.Dispose();
                throw;
            }
            return new OffloadHandle(handles, hooks, prefetcher, pool);
        }

        private static bool Matches(WeightStore store, string key, Tensor t, List<string> problems)
        {
            var shape = store.Shape(key);
            if (!shape.SequenceEqual(t.shape)) { problems.Add($"'{key}' is [{string.Join(", ", shape)}] in the store, [{string.Join(", ", t.shape)}] in the model"); return false; }
            var dtype = store.DType(key);
            if (dtype != t.dtype) { problems.Add($"'{key}' is {dtype} in the store, {t.dtype} in the model"); return false; }
            return true;
        }
    }
}
