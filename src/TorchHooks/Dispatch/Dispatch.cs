using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>A dispatched model's handle (<see cref="DispatchExtensions.dispatch_model"/>): dispose it to restore the original placement.</summary>
    public sealed class DispatchHandle : IDisposable
    {
        private readonly List<RemovableHandle> _hooks;
        private readonly List<TensorPlacement> _moved;
        private readonly WeightStore? _ownedStore;
        private bool _disposed;

        internal DispatchHandle(IReadOnlyDictionary<string, string> map, torch.Device? main, List<RemovableHandle> hooks, List<TensorPlacement> moved, OffloadHandle? offload, WeightStore? ownedStore)
        {
            hf_device_map = new Dictionary<string, string>(map, StringComparer.Ordinal);
            main_device = main; _hooks = hooks; _moved = moved; Offload = offload; _ownedStore = ownedStore;
        }

        /// <summary>Accelerate's <c>model.hf_device_map</c>: the map the model was dispatched with.</summary>
        public IReadOnlyDictionary<string, string> hf_device_map { get; }

        /// <summary>The device the top-level module and the <c>"disk"</c> entries execute on (null: one device, no hooks).</summary>
        public torch.Device? main_device { get; }

        /// <summary>The offload of the <c>"disk"</c> entries (null without any): paths, bytes, prefetch counters.</summary>
        public OffloadHandle? Offload { get; }

        /// <summary>How many hooks the dispatch attached (0 for a one-device map without <c>force_hooks</c>, as in Accelerate).</summary>
        public int HookCount => _hooks.Count;

        /// <summary>
        /// Restores the original placement: removes the hooks in reverse order (each moves the tensors it placed back,
        /// the same objects), then the offload (its weights resident again), then closes the store opened on
        /// <c>offload_dir</c> (the folder stays, as in Accelerate). Dispose it before a store you passed.
        /// </summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            var errors = new List<Exception>();
            for (int i = _hooks.Count - 1; i >= 0; i--)
            {
                try { _hooks[i].Dispose(); }
                catch (Exception e) { errors.Add(e); }
            }
            for (int i = _moved.Count - 1; i >= 0; i--)
            {
                try { _moved[i].Restore(); }
                catch (Exception e) { errors.Add(e); }
            }
            try { Offload?.Dispose(); }
            catch (Exception e) { errors.Add(e); }
            try { _ownedStore?.Dispose(); }
            catch (Exception e) { errors.Add(e); }
            if (errors.Count > 0) throw new AggregateException("Restoring the placement of a dispatched model failed in part.", errors);
        }
    }

    /// <summary>Accelerate's <c>dispatch_model</c> for a wrapped model: a whole device map applied in one call.</summary>
    public static class DispatchExtensions
    {
        /// <summary>
        /// Accelerate's <c>dispatch_model(model, device_map, main_device, ..., force_hooks)</c>
        /// (accelerate/big_modeling.py): places every mapped submodule on its device — its parameters and buffers keep
        /// their objects (an optimizer built before keeps working) — and offloads the <c>"disk"</c> entries to
        /// <paramref name="offloadStore"/> through <see cref="OffloadExtensions.Offload"/>. With more than one device, a
        /// <c>"disk"</c> entry, or <paramref name="force_hooks"/>, it attaches Accelerate's hooks
        /// (<c>attach_align_device_hook_on_blocks</c>): an <see cref="AlignDevicesHook"/> on each mapped module (placing its
        /// subtree), on each of its submodules that has tensors (moving their inputs), and on the top-level module with
        /// <c>io_same_device</c> on <paramref name="main_device"/>, so the output comes back where the inputs were. With
        /// one device and no <paramref name="force_hooks"/> it only moves the tensors (Accelerate's <c>model.to(device)</c>).
        /// </summary>
        /// <param name="model">The wrapped model.</param>
        /// <param name="device_map">Module path → <c>"cpu"</c>, <c>"cuda:N"</c> (or a GPU index <c>"N"</c>), <c>"meta"</c> or <c>"disk"</c>;
        /// <c>""</c> is the whole model. An entry covers the module and everything under it (e.g. from
        /// <see cref="DeviceMap.infer_auto_device_map"/>), except an entry whose module's children all have entries of their
        /// own: it places only the module's own tensors (the planner's entry for a split module). Every module with parameters
        /// or buffers must be covered.</param>
        /// <param name="main_device">Where the top-level module and the <c>"disk"</c> entries execute; default as Accelerate:
        /// <c>cpu</c> if the map has only <c>cpu</c> and <c>disk</c>, else its first other device (in enumeration order).</param>
        /// <param name="offload_dir">Accelerate's <c>offload_dir</c>, for the <c>"disk"</c> entries when no <paramref name="offloadStore"/>
        /// is given: a folder in Accelerate's offload format used as it is if it has an <c>index.json</c>; otherwise the
        /// <c>"disk"</c> entries' weights (which must have data) are written there first (<see cref="OffloadFolder.Write"/>, as
        /// Accelerate's <c>offload_state_dict</c>). The handle closes the store it opens; the folder stays.</param>
        /// <param name="offloadStore">The weights of the <c>"disk"</c> entries: <c>WeightStore.Disk(Checkpoint.Open(path))</c> (any
        /// checkpoint format) or <c>WeightStore.Host(stateDict)</c>.</param>
        /// <param name="offloadOptions">Prefetch and memory options of the offload (its <c>Modules</c> must be null: the map selects).</param>
        /// <param name="force_hooks">Attach the hooks even for a one-device map.</param>
        /// <exception cref="ArgumentException">Nothing was changed: an entry naming no module (or a parameter instead of its module), an
        /// unknown or absent device, nested entries with different devices (outside the case above), a module with tensors no entry covers, a tensor shared
        /// by modules on different devices, a <c>meta</c> tensor mapped to a device with data, <c>"disk"</c> entries without a store or
        /// with a main device other than <c>cpu</c>, or what <see cref="OffloadExtensions.Offload"/> refuses.</exception>
        public static DispatchHandle dispatch_model(this IHookedModule model, IReadOnlyDictionary<string, string> device_map, string? main_device = null,
                                                    string? offload_dir = null, WeightStore? offloadStore = null, OffloadOptions? offloadOptions = null, bool force_hooks = false)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call dispatch_model on a facade from WithHooks().");
            if (device_map is null || device_map.Count == 0)
                throw new ArgumentException("Pass a device map with at least one entry, e.g. { [\"\"] = \"cpu\" } or DeviceMap.infer_auto_device_map(model, budgets).", nameof(device_map));

            // 1. Check everything; nothing moves before all is known good.
            var paths = new HashSet<string>(model.Paths, StringComparer.Ordinal);
            var devices = new Dictionary<string, torch.Device?>(StringComparer.Ordinal);   // null: disk
            foreach (var (path, name) in device_map)
            {
                if (path is null) throw new ArgumentException("The device map has a null path: use \"\" for the whole model.", nameof(device_map));
                if (!paths.Contains(path)) throw new ArgumentException(UnknownPath(model, path), nameof(device_map));
                devices[path] = name?.Trim() == DeviceNames.Disk ? null : DeviceNames.Parse(name, $"The device map entry '{path}'");
            }
            // An entry whose module's children are all covered by entries of their own places only the module's own tensors
            // (what infer_auto_device_map emits when it splits a module that has tensors of its own); any other entry covers
            // its whole subtree, and an entry inside it must agree.
            var ownOnly = new HashSet<string>(devices.Keys.Where(p => model[p].Module.named_children().Any() && model[p].Module.named_children().All(c => Covered(model, devices, Join(p, c.name)))), StringComparer.Ordinal);
            foreach (var (outer, outerDevice) in devices)
                foreach (var (inner, innerDevice) in devices)
                    if (outer != inner && Covers(outer, inner) && !ownOnly.Contains(outer) && Describe(outerDevice) != Describe(innerDevice))
                        throw new ArgumentException($"The device map places '{Show(outer)}' on {Describe(outerDevice)} and '{inner}', inside it, on {Describe(innerDevice)}: " +
                                                    $"entries that overlap must agree. Remove one of the two, or give every submodule of '{Show(outer)}' an entry of its own (then '{Show(outer)}' places only its own tensors).", nameof(device_map));
            bool anyDisk = devices.Values.Any(d => d is null);
            var distinct = devices.Values.Where(d => d is not null).Select(d => d!.ToString()).Distinct().ToList();
            torch.Device main;
            if (main_device is not null)
            {
                if (main_device.Trim() == DeviceNames.Disk) throw new ArgumentException("main_device cannot be \"disk\": pass the device the model executes on, e.g. \"cpu\".", nameof(main_device));
                main = DeviceNames.Parse(main_device, nameof(main_device));
            }
            else if (devices.Values.All(d => d is null || d.type == DeviceType.CPU)) main = torch.CPU;
            else main = devices.Values.First(d => d is not null && d.type != DeviceType.CPU)!;
            if (anyDisk)
            {
                if (offloadStore is null && string.IsNullOrEmpty(offload_dir))
                    throw new ArgumentException($"The device map sends {string.Join(", ", devices.Where(d => d.Value is null).Select(d => "'" + Show(d.Key) + "'"))} to \"disk\" but no store was given: " +
                                                "pass offload_dir (a folder to write them to, or one already in Accelerate's offload format), or offloadStore, e.g. WeightStore.Disk(Checkpoint.Open(path)).", nameof(offloadStore));
                if (offloadStore is not null && !string.IsNullOrEmpty(offload_dir))
                    throw new ArgumentException("Pass offload_dir or offloadStore, not both: the store is where the \"disk\" weights are read from.", nameof(offload_dir));
                if (main.type != DeviceType.CPU)
                    throw new ArgumentException($"\"disk\" entries execute on the main device, {main}, but offloaded weights are materialised on the CPU only (not built for other devices): pass main_device: \"cpu\", or map those modules to a device.", nameof(main_device));
                if (offloadOptions?.Modules is not null)
                    throw new ArgumentException("offloadOptions.Modules must be null: the device map's \"disk\" entries select the offloaded modules.", nameof(offloadOptions));
            }

            var problems = new List<string>();
            var deviceOf = new Dictionary<Tensor, (string Key, string Device)>(ReferenceEqualityComparer.Instance);
            var tensorsByEntry = new Dictionary<string, List<Tensor>>(StringComparer.Ordinal);
            foreach (var path in model.Paths)
            {
                var module = model[path].Module;
                string prefix = path.Length == 0 ? "" : path + ".";
                var own = module.named_parameters(recurse: false).Select(p => (Name: p.name, Tensor: (Tensor)p.parameter))
                                .Concat(module.named_buffers(recurse: false).Select(b => (Name: b.name, Tensor: b.buffer))).ToList();
                if (own.Count == 0) continue;
                string? entry = EntryOf(devices, path);
                if (entry is null)
                {
                    problems.Add($"'{Show(path)}' ({module.GetType().Name}) has parameters or buffers ({string.Join(", ", own.Select(o => prefix + o.Name))}) but no entry covers it: add \"{path}\" (or a module above it) to the map");
                    continue;
                }
                var device = devices[entry];
                foreach (var (name, t) in own)
                {
                    string key = prefix + name, where = Describe(device);
                    if (deviceOf.TryGetValue(t, out var other))
                    {
                        if (other.Device != where) problems.Add($"'{key}' is the same tensor as '{other.Key}' (tied), but the map puts one on {where} and the other on {other.Device}: map both modules to one device");
                        continue;
                    }
                    deviceOf[t] = (key, where);
                    if (device is not null && device.type != DeviceType.META && t.device_type == DeviceType.META)
                        problems.Add($"'{key}' is on meta (no data) and cannot be placed on {device}: load the weights first (load_state_dict), or map '{Show(entry)}' to \"disk\" (offload) or \"meta\"");
                    if (device is not null) (tensorsByEntry.TryGetValue(entry, out var list) ? list : tensorsByEntry[entry] = new()).Add(t);
                }
            }
            if (problems.Count > 0)
                throw new ArgumentException($"Cannot dispatch {model.Unwrap().GetType().Name} with this device map; nothing was changed:\n  " + string.Join("\n  ", problems), nameof(device_map));

            // 2. Offload the disk entries (it checks the store and changes nothing if it refuses), then place.
            OffloadHandle? offload = null;
            WeightStore? ownedStore = null;
            string? createdFolder = null;
            if (anyDisk && offloadStore is null)
                (ownedStore, createdFolder) = OpenOffloadDir(model, devices, offload_dir!);
            offloadStore ??= ownedStore;
            if (anyDisk)
            {
                var options = new OffloadOptions
                {
                    Modules = p => EntryOf(devices, p.Path) is { } e && devices[e] is null,
                    PrefetchBytes = offloadOptions?.PrefetchBytes ?? 0,
                    ReturnFreedMemory = offloadOptions?.ReturnFreedMemory ?? true,
                    MapWeights = offloadOptions?.MapWeights ?? true,
                };
                try { offload = model.Offload(offloadStore!, options); }
                catch
                {
                    ownedStore?.Dispose();
                    if (createdFolder is not null) Directory.Delete(createdFolder, recursive: true);
                    throw;
                }
            }
            var hooks = new List<RemovableHandle>();
            var moved = new List<TensorPlacement>();
            bool withHooks = force_hooks || anyDisk || distinct.Count > 1;
            try
            {
                if (!withHooks)
                {
                    foreach (var (entry, tensors) in tensorsByEntry)
                        foreach (var t in tensors)
                            if (TensorPlacement.Move(t, devices[entry]!) is { } placed) moved.Add(placed);
                }
                else Attach(model, "", devices, ownOnly, main, hooks, inEntry: null);
            }
            catch
            {
                for (int i = hooks.Count - 1; i >= 0; i--) hooks[i].Dispose();
                for (int i = moved.Count - 1; i >= 0; i--) moved[i].Restore();
                offload?.Dispose();
                ownedStore?.Dispose();
                if (createdFolder is not null) Directory.Delete(createdFolder, recursive: true);
                throw;
            }
            return new DispatchHandle(device_map, withHooks ? main : null, hooks, moved, offload, ownedStore);
        }

        /// <summary>
        /// Accelerate's <c>attach_align_device_hook_on_blocks</c> with <c>dispatch_model</c>'s execution devices, in module
        /// pre-order: a mapped module gets a hook that places its subtree (<c>io_same_device</c> if it is the top level), and
        /// every submodule with tensors under it a hook that moves its inputs (<c>attach_execution_device_hook</c>); a
        /// <c>"disk"</c> entry executes on <paramref name="main"/>; the top level, if unmapped, gets an <c>io_same_device</c>
        /// hook on <paramref name="main"/>.
        /// </summary>
        private static void Attach(IHookedModule model, string path, Dictionary<string, torch.Device?> devices, HashSet<string> ownOnly, torch.Device main, List<RemovableHandle> hooks, torch.Device? inEntry)
        {
            var node = model[path];
            if (inEntry is null && devices.TryGetValue(path, out var device))
            {
                var execution = device ?? main;
                bool subtree = !ownOnly.Contains(path);
                hooks.Add(node.add_hook_to_module(new AlignDevicesHook(execution, io_same_device: path.Length == 0, place_submodules: device is not null && subtree), append: true));
                if (subtree) inEntry = execution;
            }
            else if (inEntry is not null)
            {
                if (HasTensors(node.Module)) hooks.Add(node.add_hook_to_module(new AlignDevicesHook(inEntry), append: true));
            }
            else if (path.Length == 0)
                hooks.Add(node.add_hook_to_module(new AlignDevicesHook(main, io_same_device: true), append: true));
            foreach (var (name, _) in node.Module.named_children())
                Attach(model, Join(path, name), devices, ownOnly, main, hooks, inEntry);
        }

        /// <summary>
        /// Accelerate's <c>offload_dir</c>: the folder's store, after writing the <c>"disk"</c> entries' weights there
        /// (<c>offload_state_dict</c>) unless it already has an <c>index.json</c>. Returns the folder if this created it.
        /// </summary>
        private static (WeightStore Store, string? Created) OpenOffloadDir(IHookedModule model, Dictionary<string, torch.Device?> devices, string offload_dir)
        {
            string full = Path.GetFullPath(offload_dir);
            string? created = null;
            if (!File.Exists(Path.Combine(full, "index.json")))
            {
                using var sd = model.StateDict();
                foreach (var key in sd.Keys.ToList())
                {
                    int dot = key.LastIndexOf('.');
                    if (EntryOf(devices, dot < 0 ? "" : key.Substring(0, dot)) is not { } e || devices[e] is not null) sd.Remove(key);
                }
                bool existed = Directory.Exists(full);
                try { OffloadFolder.Write(sd, full); }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"Cannot write the \"disk\" entries' weights to offload_dir ({full}); nothing was changed: {e.Message}", nameof(offload_dir), e);
                }
                catch
                {
                    if (!existed && Directory.Exists(full)) Directory.Delete(full, recursive: true);
                    throw;
                }
                if (!existed) created = full;
            }
            try { return (WeightStore.Disk(Checkpoint.Open(full)), created); }
            catch
            {
                if (created is not null) Directory.Delete(created, recursive: true);
                throw;
            }
        }

        /// <summary>Whether entries at or below <paramref name="path"/> cover its whole subtree (its own entry, no tensors at all, or a module without tensors of its own whose children all are).</summary>
        private static bool Covered(IHookedModule model, Dictionary<string, torch.Device?> devices, string path)
        {
            if (devices.ContainsKey(path)) return true;
            var module = model[path].Module;
            if (!HasTensors(module)) return true;
            var children = module.named_children().ToList();
            return children.Count > 0 && !module.named_parameters(recurse: false).Any() && !module.named_buffers(recurse: false).Any()
                   && children.All(c => Covered(model, devices, Join(path, c.name)));
        }

        private static string Join(string path, string name) => path.Length == 0 ? name : path + "." + name;

        private static bool HasTensors(torch.nn.Module module) => module.parameters().Any() || module.buffers().Any();

        /// <summary>The entry that covers <paramref name="path"/>: itself or the nearest module above it.</summary>
        private static string? EntryOf(Dictionary<string, torch.Device?> devices, string path)
        {
            for (string p = path; ; )
            {
                if (devices.ContainsKey(p)) return p;
                if (p.Length == 0) return null;
                int dot = p.LastIndexOf('.');
                p = dot < 0 ? "" : p.Substring(0, dot);
            }
        }

        private static bool Covers(string outer, string inner) => outer.Length == 0 || inner.StartsWith(outer + ".", StringComparison.Ordinal);

        private static string Describe(torch.Device? device) => device is null ? "disk" : device.ToString();

        private static string Show(string path) => path.Length == 0 ? "\"\" (the whole model)" : path;

        private static string UnknownPath(IHookedModule model, string path)
        {
            int dot = path.LastIndexOf('.');
            string parent = dot < 0 ? "" : path.Substring(0, dot), leaf = path.Substring(dot + 1);
            if (model.Paths.Contains(parent))
            {
                var module = model[parent].Module;
                if (module.named_parameters(recurse: false).Any(p => p.name == leaf) || module.named_buffers(recurse: false).Any(b => b.name == leaf))
                    return $"The device map entry '{path}' is a parameter or buffer, not a module: map its module '{Show(parent)}' (dispatch places whole modules).";
            }
            var sample = model.Paths.Where(p => p.Length > 0).Take(6);
            return $"The device map entry '{path}' names no module of {model.Unwrap().GetType().Name}: use module paths as model.Paths lists them (e.g. {string.Join(", ", sample.Select(p => "'" + p + "'"))}), or \"\" for the whole model.";
        }
    }
}
