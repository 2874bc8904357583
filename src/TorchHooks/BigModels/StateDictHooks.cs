using System;
using System.Collections.Generic;
using System.Threading;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// PyTorch's <c>register_load_state_dict_pre_hook</c> hook: <c>hook(module, state_dict, prefix, local_metadata,
    /// strict, missing_keys, unexpected_keys, error_msgs)</c>, called before the module's own tensors are matched
    /// (rename keys, convert values). <paramref name="strict"/> is always true, as PyTorch passes it.
    /// </summary>
    public delegate void LoadStateDictPreHook(torch.nn.Module module, StateDict state_dict, string prefix, IDictionary<string, object> local_metadata,
                                              bool strict, IList<string> missing_keys, IList<string> unexpected_keys, IList<string> error_msgs);

    /// <summary>PyTorch's <c>register_load_state_dict_post_hook</c> hook: <c>hook(module, incompatible_keys)</c>; may edit the key lists in place.</summary>
    public delegate void LoadStateDictPostHook(torch.nn.Module module, IncompatibleKeys incompatible_keys);

    /// <summary>PyTorch's <c>register_state_dict_pre_hook</c> hook: <c>hook(module, prefix, keep_vars)</c>, before the module's tensors are added.</summary>
    public delegate void StateDictPreHook(torch.nn.Module module, string prefix, bool keep_vars);

    /// <summary>PyTorch's <c>register_state_dict_post_hook</c> hook: <c>hook(module, state_dict, prefix, local_metadata)</c>; may edit the dict in place.</summary>
    public delegate void StateDictPostHook(torch.nn.Module module, StateDict state_dict, string prefix, IDictionary<string, object> local_metadata);

    /// <summary>PyTorch's <c>_IncompatibleKeys(missing_keys, unexpected_keys)</c>, returned by <c>load_state_dict</c>.</summary>
    public sealed class IncompatibleKeys
    {
        internal IncompatibleKeys(List<string> missing, List<string> unexpected) { missing_keys = missing; unexpected_keys = unexpected; }

        /// <summary>The model's keys the state dict lacked (module pre-order; own parameters, then buffers).</summary>
        public IList<string> missing_keys { get; }
        /// <summary>The state dict's keys that match no parameter, buffer or submodule.</summary>
        public IList<string> unexpected_keys { get; }

        /// <inheritdoc />
        public override string ToString()
            => missing_keys.Count == 0 && unexpected_keys.Count == 0 ? "<All keys matched successfully>"
             : $"_IncompatibleKeys(missing_keys=[{string.Join(", ", missing_keys)}], unexpected_keys=[{string.Join(", ", unexpected_keys)}])";
    }

    // The state-dict hooks live on the module's hook point, like its forward hooks. They are not on the call path:
    // registering them arms nothing there.
    public abstract partial class HookPoint
    {
        private HookList? _loadPre, _loadPost, _statePre, _statePost;

        private static void Unchanged() { }

        internal HookList LoadStateDictPre => _loadPre ?? Interlocked.CompareExchange(ref _loadPre, new HookList(Unchanged), null) ?? _loadPre!;
        internal HookList LoadStateDictPost => _loadPost ?? Interlocked.CompareExchange(ref _loadPost, new HookList(Unchanged), null) ?? _loadPost!;
        internal HookList StateDictPre => _statePre ?? Interlocked.CompareExchange(ref _statePre, new HookList(Unchanged), null) ?? _statePre!;
        internal HookList StateDictPost => _statePost ?? Interlocked.CompareExchange(ref _statePost, new HookList(Unchanged), null) ?? _statePost!;

        /// <summary>
        /// PyTorch's <c>Module.register_load_state_dict_pre_hook</c>: <paramref name="hook"/> runs when
        /// <see cref="StateDictLoading.load_state_dict(IHookedModule, StateDict, bool)"/> reaches this module, before its
        /// own parameters and buffers are matched. Keys are full (<paramref name="hook"/>'s <c>prefix</c> + name).
        /// </summary>
        public RemovableHandle register_load_state_dict_pre_hook(LoadStateDictPreHook hook) => LoadStateDictPre.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>PyTorch's <c>Module.register_load_state_dict_post_hook</c>: runs after the load, with the incompatible keys (editable in place).</summary>
        public RemovableHandle register_load_state_dict_post_hook(LoadStateDictPostHook hook) => LoadStateDictPost.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>PyTorch's <c>Module.register_state_dict_pre_hook</c>: runs when <see cref="StateDictLoading.StateDict"/> reaches this module, before its tensors are added.</summary>
        public RemovableHandle register_state_dict_pre_hook(StateDictPreHook hook) => StateDictPre.Add(hook, prepend: false, alwaysCall: false);

        /// <summary>PyTorch's <c>Module.register_state_dict_post_hook</c>: runs after this module's subtree was added; may edit the dict.</summary>
        public RemovableHandle register_state_dict_post_hook(StateDictPostHook hook) => StateDictPost.Add(hook, prepend: false, alwaysCall: false);
    }
}
