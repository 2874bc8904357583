using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Accelerate's <c>infer_auto_device_map</c> (<c>accelerate/utils/modeling.py</c>): which device each part of a model
    /// goes to, from per-device byte budgets. Devices are filled in the order given (e.g. <c>cpu</c>), then the rest goes
    /// to <c>disk</c> (an offload store). On every device a room the size of the largest layer is kept free (where an
    /// offloaded layer is materialised), a module that does not fit is split into its children unless its class is in
    /// <c>no_split_module_classes</c> (or it has none), in which case it moves to the next device. Works on an empty
    /// (<c>meta</c>) model: sizes come from shapes and dtypes.
    /// </summary>
    public static class DeviceMap
    {
        /// <summary>
        /// Plans the placement: a map from module paths (a parameter's own module path for parameters of a split module)
        /// to a device name from <paramref name="max_memory"/> or <c>"disk"</c>, covering every parameter and buffer once.
        /// </summary>
        /// <exception cref="ArgumentException">A budget is negative, or smaller than the largest layer (the room one call needs).</exception>
        public static IReadOnlyDictionary<string, string> infer_auto_device_map(IHookedModule model, IReadOnlyDictionary<string, long> max_memory, IEnumerable<string>? no_split_module_classes = null)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass a facade from WithHooks().");
            if (max_memory is null || max_memory.Count == 0) throw new ArgumentException("Pass at least one device budget, e.g. { [\"cpu\"] = 8L << 30 }.", nameof(max_memory));
            var noSplit = new HashSet<string>(no_split_module_classes ?? Array.Empty<string>(), StringComparer.Ordinal);
            var root = model.Unwrap();
            long largest = LargestLayer(root, "", noSplit, out string largestName);
            foreach (var (device, budget) in max_memory)
            {
                if (device == "disk") throw new ArgumentException("\"disk\" takes what does not fit and has no budget; list only memory devices.", nameof(max_memory));
                if (budget < largest)
                    throw new ArgumentException($"The budget of '{device}' ({budget} bytes) is smaller than the largest layer, '{largestName}' ({largest} bytes), which must fit to run: raise it, or add the layer's class to no_split_module_classes only if it is not this one.", nameof(max_memory));
            }
            var devices = max_memory.Keys.ToList();
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            var queue = new LinkedList<(string Name, torch.nn.Module? Module, long Size)>(Items(root, ""));
            int current = 0;
            long used = 0;
            while (queue.Count > 0)
            {
                var (name, module, size) = queue.First!.Value;
                queue.RemoveFirst();
                if (current >= devices.Count) { map[name] = "disk"; continue; }
                long room = max_memory[devices[current]] - largest;
                if (used + size <= room) { map[name] = devices[current]; used += size; continue; }
                var children = module is null ? new List<(string, torch.nn.Module?, long)>() : Items(module, name + ".");
                if (children.Count == 0 || noSplit.Contains(module!.GetType().Name))
                {
                    current++; used = 0;
                    queue.AddFirst((name, module, size));
                    continue;
                }
                for (int i = children.Count - 1; i >= 0; i--) queue.AddFirst(children[i]);
            }
            return map;
        }

        /// <summary>
        /// The device <paramref name="device_map"/> gives the module at <paramref name="path"/>: its longest entry that is
        /// the path or a prefix of it (<c>"layers"</c> covers <c>"layers.3.mlp"</c>). Applying a map on the CPU:
        /// <c>m.Offload(store, new OffloadOptions { Modules = p =&gt; DeviceMap.DeviceOf(map, p.Path) == "disk" })</c>.
        /// </summary>
        /// <exception cref="KeyNotFoundException">No entry covers the path (the map leaves the module unplaced).</exception>
        public static string DeviceOf(IReadOnlyDictionary<string, string> device_map, string path)
        {
            if (device_map is null) throw new ArgumentNullException(nameof(device_map));
            if (path is null) throw new ArgumentNullException(nameof(path));
            for (string p = path; ; )
            {
                if (device_map.TryGetValue(p, out var device)) return device;
                if (p.Length == 0) break;
                int dot = p.LastIndexOf('.');
                p = dot < 0 ? "" : p.Substring(0, dot);
            }
            throw new KeyNotFoundException($"The device map places no entry on '{path}' or a module above it: the module would be unplaced. Add an entry (e.g. \"{path}\": \"cpu\").");
        }

        /// <summary>
        /// A device map from a rule instead of budgets — placement by path prefix, type or any predicate:
        /// <paramref name="place"/> is asked for each module in pre-order and returns a device name (<c>"cpu"</c>,
        /// <c>"cuda:N"</c>, <c>"meta"</c>, <c>"disk"</c>) for the module and everything under it, or null to decide below;
        /// every part of the model no answer covers goes to <paramref name="otherwise"/>. The map has one entry per placed
        /// subtree, plus, for a module with tensors of its own above placed ones, an entry for its own tensors (its children
        /// all get entries), so <see cref="DispatchExtensions.dispatch_model"/> takes it as it is. E.g.
        /// <c>DeviceMap.Build(m, p =&gt; p.Module is Block ? "disk" : null)</c>.
        /// </summary>
        /// <exception cref="ArgumentException"><paramref name="otherwise"/> is empty.</exception>
        public static IReadOnlyDictionary<string, string> Build(IHookedModule model, Func<HookPoint, string?> place, string otherwise = "cpu")
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass a facade from WithHooks().");
            if (place is null) throw new ArgumentNullException(nameof(place), "Pass the rule, e.g. p => p.Module is Block ? \"disk\" : null.");
            if (string.IsNullOrWhiteSpace(otherwise)) throw new ArgumentException("Pass the device for what the rule leaves, e.g. \"cpu\".", nameof(otherwise));
            var chosen = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var path in model.Paths)
                if (place(model[path]) is { } device && !HasChosenAncestor(chosen, path)) chosen[path] = device;
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            void Cover(string path)
            {
                if (chosen.TryGetValue(path, out var device)) { map[path] = device; return; }
                var module = model[path].Module;
                bool below = chosen.Keys.Any(c => path.Length == 0 || c.StartsWith(path + ".", StringComparison.Ordinal));
                if (!below)
                {
                    if (module.parameters().Any() || module.buffers().Any()) map[path] = otherwise;
                    return;
                }
                if (module.named_parameters(recurse: false).Any() || module.named_buffers(recurse: false).Any()) map[path] = otherwise;   // its own tensors only
                foreach (var (name, _) in module.named_children()) Cover(path.Length == 0 ? name : path + "." + name);
            }
            Cover("");
            return map;
        }

        private static bool HasChosenAncestor(Dictionary<string, string> chosen, string path)
        {
            for (string p = path; p.Length > 0; )
            {
                int dot = p.LastIndexOf('.');
                p = dot < 0 ? "" : p.Substring(0, dot);
                if (chosen.ContainsKey(p)) return true;
            }
            return false;
        }

        /// <summary>A module's own tensors (as one item named after the module, null module) and its children, with sizes.</summary>
        private static List<(string Name, torch.nn.Module? Module, long Size)> Items(torch.nn.Module module, string prefix)
        {
            var items = new List<(string, torch.nn.Module?, long)>();
            long own = module.named_parameters(recurse: false).Sum(p => Bytes(p.parameter)) + module.named_buffers(recurse: false).Sum(b => Bytes(b.buffer));
            if (own > 0 && prefix.Length > 0) items.Add((prefix.TrimEnd('.'), null, own));
            else if (own > 0) items.Add(("", null, own));
            foreach (var (name, child) in module.named_children()) items.Add((prefix + name, child, Size(child)));
            return items;
        }

        private static long Size(torch.nn.Module module)
            => module.parameters().Sum(p => Bytes(p)) + module.buffers().Sum(b => Bytes(b));

        private static long Bytes(torch.Tensor t) => t.numel() * StoredTensor.ElementSize(t.dtype, "a tensor");

        /// <summary>Accelerate's <c>get_max_layer_size</c>: the largest module that is a leaf or of a no-split class.</summary>
        private static long LargestLayer(torch.nn.Module module, string path, HashSet<string> noSplit, out string name)
        {
            long best = module.named_parameters(recurse: false).Sum(p => Bytes(p.parameter)) + module.named_buffers(recurse: false).Sum(b => Bytes(b.buffer));
            name = path;
            var children = module.named_children().ToList();
            if (children.Count == 0 || noSplit.Contains(module.GetType().Name)) { name = path; return Size(module); }
            foreach (var (n, child) in children)
            {
                long size = LargestLayer(child, path.Length == 0 ? n : path + "." + n, noSplit, out var childName);
                if (size > best) { best = size; name = childName; }
            }
            return best;
        }
    }
}
