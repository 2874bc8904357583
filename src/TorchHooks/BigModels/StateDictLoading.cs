using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// PyTorch's <c>Module.load_state_dict</c> and <c>Module.state_dict</c> with their hooks, for a wrapped model,
    /// streaming: a <see cref="Checkpoint"/>'s tensors are read one at a time (memory-mapped) straight into the
    /// model's tensors.
    /// </summary>
    /// <remarks>
    /// <para><b>Order</b> (PyTorch's <c>load_state_dict</c> → <c>_load_from_state_dict</c>): modules in pre-order;
    /// at each, its load pre-hooks, then its own parameters and persistent buffers are matched by
    /// <c>prefix + name</c> (absent: a missing key), then the keys under its prefix whose first component is neither
    /// its own tensor nor a child are unexpected. After the load, the post-hooks run in post-order (children first)
    /// with the <see cref="IncompatibleKeys"/>.</para>
    /// <para><b>Nothing moves before everything is checked</b>: every key is matched, every shape and dtype compared
    /// and (for <c>strict</c>) the missing and unexpected keys collected before the first tensor is written; any
    /// error throws <see cref="StateDictLoadException"/> with PyTorch's message and the model untouched. Differences
    /// from PyTorch, which copies as it goes and raises at the end: a post-hook cannot waive a strict error (load with
    /// <c>strict: false</c> and check the returned keys instead); a dtype difference is an error (PyTorch converts in
    /// <c>copy_</c>): convert in a pre-hook (<c>state_dict[key] = state_dict[key].to(dtype)</c>).</para>
    /// <para><b>Identity</b>: a parameter or buffer with storage keeps its object (the bytes are written into it), so an
    /// optimizer built before the load keeps working. A <c>meta</c> one (built in <see cref="EmptyWeights.Scope"/>)
    /// gets a new CPU <c>Parameter</c>/tensor in its module — libtorch cannot give a meta tensor storage in place —
    /// as PyTorch's <c>load_state_dict(assign=True)</c> and Accelerate do; parameters shared by several modules stay
    /// shared. Build optimizers after loading an empty model.</para>
    /// </remarks>
    public static class StateDictLoading
    {
        /// <summary>
        /// Loads <paramref name="checkpoint"/> into <paramref name="model"/>, one tensor at a time (see the class remarks).
        /// Returns PyTorch's <c>_IncompatibleKeys</c>.
        /// </summary>
        /// <exception cref="StateDictLoadException">Missing or unexpected keys (with <paramref name="strict"/>), or a shape or dtype mismatch; nothing was written.</exception>
        public static IncompatibleKeys load_state_dict(this IHookedModule model, Checkpoint checkpoint, bool strict = true)
        {
            if (checkpoint is null) throw new ArgumentNullException(nameof(checkpoint), "Pass a checkpoint from Checkpoint.Open(path).");
            using var sd = new StateDict(checkpoint);
            return model.load_state_dict(sd, strict);
        }

        /// <summary>Loads <paramref name="state_dict"/> (not modified: hooks see a copy) into <paramref name="model"/>; see the class remarks.</summary>
        /// <exception cref="StateDictLoadException">Missing or unexpected keys (with <paramref name="strict"/>), or a shape or dtype mismatch; nothing was written.</exception>
        public static IncompatibleKeys load_state_dict(this IHookedModule model, StateDict state_dict, bool strict = true)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call load_state_dict on a facade from WithHooks().");
            if (state_dict is null) throw new ArgumentNullException(nameof(state_dict), "Pass a StateDict or a Checkpoint.");
            using var sd = state_dict.Copy();
            var missing = new List<string>();
            var unexpected = new List<string>();
            var errors = new List<string>();
            var plan = new List<(torch.nn.Module Module, string Name, Tensor Target, bool IsParameter, string Key)>();
            var post = new List<(HookPoint Node, torch.nn.Module Module)>();
            var root = model.Unwrap();

            void Visit(torch.nn.Module module, string prefix, string path)
            {
                var node = model[path];
                foreach (var h in node.LoadStateDictPre.Snapshot)
                    ((LoadStateDictPreHook)h.Fn)(module, sd, prefix, new Dictionary<string, object>(), true, missing, unexpected, errors);
                var own = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (name, p) in module.named_parameters(recurse: false)) { own.Add(name); Match(module, name, p, true, prefix + name); }
                foreach (var (name, b) in module.named_buffers(recurse: false, include_nonpersistent: false)) { own.Add(name); Match(module, name, b, false, prefix + name); }
                var children = new HashSet<string>(module.named_children().Select(c => c.name), StringComparer.Ordinal);
                foreach (var key in sd.Keys)
                {
                    if (!key.StartsWith(prefix, StringComparison.Ordinal)) continue;
                    var rest = key.Substring(prefix.Length);
                    int dot = rest.IndexOf('.');
                    var first = dot < 0 ? rest : rest.Substring(0, dot);
                    if (!children.Contains(first) && !own.Contains(first)) unexpected.Add(key);
                }
                foreach (var (name, child) in module.named_children())
                    Visit(child, prefix + name + ".", path.Length == 0 ? name : path + "." + name);
                post.Add((node, module));
            }

            void Match(torch.nn.Module module, string name, Tensor target, bool isParameter, string key)
            {
                if (!sd.ContainsKey(key)) { missing.Add(key); return; }
                var shape = sd.Shape(key);
                if (!shape.SequenceEqual(target.shape))
                {
                    errors.Add($"size mismatch for {key}: copying a param with shape torch.Size([{string.Join(", ", shape)}]) from checkpoint, the shape in current model is torch.Size([{string.Join(", ", target.shape)}]).");
                    return;
                }
                var dtype = sd.DType(key);
                if (dtype != target.dtype)
                {
                    errors.Add($"dtype mismatch for {key}: the state dict has {dtype}, the model {target.dtype}; convert it in a load_state_dict pre-hook (state_dict[key] = state_dict[key].to(dtype)) or build the model in that dtype.");
                    return;
                }
                var (stored, source, _) = sd.Source(key);
                if (stored is not null) source!.CheckUnchanged(stored);   // a file changed since it was opened: refused before anything moves
                plan.Add((module, name, target, isParameter, key));
            }

            Visit(root, "", "");
            Check(root, strict, missing, unexpected, errors);

            var replaced = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
            using (torch.no_grad())
                foreach (var item in plan) Write(item.Module, item.Name, item.Target, item.IsParameter, sd, item.Key, replaced);

            var keys = new IncompatibleKeys(missing, unexpected);
            foreach (var (node, module) in post)
                foreach (var h in node.LoadStateDictPost.Snapshot) ((LoadStateDictPostHook)h.Fn)(module, keys);
            Check(root, strict, missing, unexpected, new List<string>());   // a post-hook may have added keys
            return keys;
        }

        private static void Check(torch.nn.Module root, bool strict, List<string> missing, List<string> unexpected, List<string> errors)
        {
            if (strict)
            {
                if (unexpected.Count > 0) errors.Insert(0, $"Unexpected key(s) in state_dict: {string.Join(", ", unexpected.Select(k => $"\"{k}\""))}. ");
                if (missing.Count > 0) errors.Insert(0, $"Missing key(s) in state_dict: {string.Join(", ", missing.Select(k => $"\"{k}\""))}. ");
            }
            if (errors.Count > 0) throw new StateDictLoadException(root.GetType().Name, errors, missing, unexpected);
        }

        /// <summary>Writes one planned tensor: into its storage, or (meta) into a new CPU tensor registered in its place.</summary>
        private static void Write(torch.nn.Module module, string name, Tensor target, bool isParameter, StateDict sd, string key, Dictionary<Tensor, Tensor> replaced)
        {
            var (stored, source, value) = sd.Source(key);
            if (target.device_type == DeviceType.META)
            {
                if (!replaced.TryGetValue(target, out var fresh))
                {
                    var data = torch.empty(target.shape, target.dtype, torch.CPU);
                    fresh = isParameter ? new TorchSharp.Modules.Parameter(data, target.requires_grad) : data;
                    replaced[target] = fresh;
                }
                Fill(fresh, stored, source, value);
                ModuleSlots.Replace(module, name, target, fresh, isParameter);
                return;
            }
            if (stored is not null && target.device_type == DeviceType.CPU && target.is_contiguous())
            {
                source!.ReadInto(stored, target);
                return;
            }
            Fill(target, stored, source, value);
        }

        private static void Fill(Tensor target, StoredTensor? stored, Checkpoint? source, Tensor? value)
        {
            if (value is not null) { target.copy_(value); return; }
            if (target.device_type == DeviceType.CPU && target.is_contiguous()) { source!.ReadInto(stored!, target); return; }
            using var staging = source!.Read(stored!.Name);
            target.copy_(staging);
        }

        /// <summary>
        /// PyTorch's <c>Module.state_dict(keep_vars=...)</c> with its hooks: per module in pre-order, its state-dict
        /// pre-hooks, then its parameters and persistent buffers (detached aliases, owned by the returned dict; the
        /// tensors themselves with <paramref name="keep_vars"/>), then its submodules, then its post-hooks.
        /// </summary>
        public static StateDict StateDict(this IHookedModule model, bool keep_vars = false)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call StateDict on a facade from WithHooks().");
            var sd = new StateDict();
            try
            {
                void Visit(torch.nn.Module module, string prefix, string path)
                {
                    var node = model[path];
                    foreach (var h in node.StateDictPre.Snapshot) ((StateDictPreHook)h.Fn)(module, prefix, keep_vars);
                    foreach (var (name, p) in module.named_parameters(recurse: false)) Put(prefix + name, p);
                    foreach (var (name, b) in module.named_buffers(recurse: false, include_nonpersistent: false)) Put(prefix + name, b);
                    foreach (var (name, child) in module.named_children())
                        Visit(child, prefix + name + ".", path.Length == 0 ? name : path + "." + name);
                    var metadata = new Dictionary<string, object> { ["version"] = 1 };
                    foreach (var h in node.StateDictPost.Snapshot) ((StateDictPostHook)h.Fn)(module, sd, prefix, metadata);
                }
                void Put(string key, Tensor t)
                {
                    if (keep_vars) sd[key] = t;
                    else sd.SetOwned(key, t.detach());
                }
                Visit(model.Unwrap(), "", "");
                return sd;
            }
            catch
            {
                sd.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// <c>load_state_dict</c> refused: PyTorch's <c>RuntimeError("Error(s) in loading state_dict for …")</c>. Thrown
    /// before any tensor was written (unless a post-hook added keys under <c>strict</c>).
    /// </summary>
    public sealed class StateDictLoadException : InvalidOperationException
    {
        internal StateDictLoadException(string model, IReadOnlyList<string> errors, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected)
            : base($"Error(s) in loading state_dict for {model}:\n\t{string.Join("\n\t", errors)}\n" +
                   "Fix: rename or convert keys with a load_state_dict pre-hook (state_dict.Rename(old, new)), or pass strict: false to load what matches and check the returned keys.")
        {
            Errors = errors.ToArray(); MissingKeys = missing.ToArray(); UnexpectedKeys = unexpected.ToArray();
        }

        /// <summary>The error messages, PyTorch's wording.</summary>
        public IReadOnlyList<string> Errors { get; }
        /// <summary>The missing keys.</summary>
        public IReadOnlyList<string> MissingKeys { get; }
        /// <summary>The unexpected keys.</summary>
        public IReadOnlyList<string> UnexpectedKeys { get; }
    }
}
