using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;
using Parameter = TorchSharp.Modules.Parameter;

namespace TorchHooks
{
    /// <summary>
    /// The hook-aware facade of a TorchSharp model with one input: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T, TResult> : nn.Module<T, TResult>, IHookedModule
    {
        private readonly nn.Module<T, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T, TResult> inner) : base(inner.GetName())
        {
            _inner = inner;
            _tree = new ModuleTree(inner);
            root = _tree[""];
        }

        /// <inheritdoc />
        public HookPoint root { get; }

        /// <inheritdoc />
        public HookPoint this[string path] => _tree[path];

        /// <inheritdoc />
        public IReadOnlyCollection<string> paths => _tree.Paths;

        /// <summary>The wrapped model, unchanged.</summary>
        public nn.Module<T, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T input)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, input)</c>; return null to keep
        /// the input or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T, HookResult<T>?> hook, bool prepend = false)
            => root.register_forward_pre_hook(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, input, output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook(hook, prepend, always_call);

        /// <summary>
        /// Temporary hooks on <c>Tensor → Tensor</c> modules by path, removed when the returned scope is
        /// disposed: <c>using (m.hooks(fwd: new[] { ("encoder.0", hook) })) { m.call(x); }</c>. All paths are
        /// checked before any hook is registered.
        /// </summary>
        public HookScope hooks(
            IEnumerable<(string path, Func<nn.Module, Tensor, Tensor, HookResult<Tensor>?> hook)>? fwd = null,
            IEnumerable<(string path, Func<nn.Module, Tensor, HookResult<Tensor>?> hook)>? pre = null,
            bool always_call = false)
            => HookScope.Create(p => _tree[p], fwd, pre, always_call);

        // ---- drop-in: everything below is the wrapped model's own state ----

        /// <inheritdoc />
        public override void train(bool train = true) => _inner.train(train);
        /// <inheritdoc />
        public override bool training => _inner.training;
        /// <inheritdoc />
        public override void zero_grad(bool set_to_none = true) => _inner.zero_grad(set_to_none);
        /// <inheritdoc />
        public override IEnumerable<(string name, Parameter parameter)> named_parameters(bool recurse = true) => _inner.named_parameters(recurse);
        /// <inheritdoc />
        public override IEnumerable<Parameter> parameters(bool recurse = true) => _inner.parameters(recurse);
        /// <inheritdoc />
        public override IEnumerable<(string name, Tensor buffer)> named_buffers(bool recurse = true, bool include_nonpersistent = true) => _inner.named_buffers(recurse, include_nonpersistent);
        /// <inheritdoc />
        public override IEnumerable<Tensor> buffers(bool recurse = true, bool include_nonpersistent = true) => _inner.buffers(recurse, include_nonpersistent);
        /// <inheritdoc />
        public override IEnumerable<(string name, nn.Module module)> named_children() => _inner.named_children();
        /// <inheritdoc />
        public override IEnumerable<(string name, nn.Module module)> named_modules() => _inner.named_modules();
        /// <inheritdoc />
        public override IEnumerable<nn.Module> children() => _inner.children();
        /// <inheritdoc />
        public override IEnumerable<nn.Module> modules() => _inner.modules();
        /// <inheritdoc />
        public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null) => _inner.state_dict(destination, prefix);
        /// <inheritdoc />
        public override (IList<string> missing_keys, IList<string> unexpected_keyes) load_state_dict(Dictionary<string, Tensor> source, bool strict = true, IList<string>? skip = null) => _inner.load_state_dict(source, strict, skip);
        /// <inheritdoc />
        public override nn.Module load(System.IO.BinaryReader reader, bool strict = true, IList<string>? skip = null, Dictionary<string, bool>? loadedParameters = null) { _inner.load(reader, strict, skip, loadedParameters); return this; }
        /// <inheritdoc />
        public override nn.Module apply(Action<nn.Module> fn) { _inner.apply(fn); return this; }
        /// <inheritdoc />
        public override bool has_parameter(string target) => _inner.has_parameter(target);
        /// <inheritdoc />
        public override bool has_buffer(string target) => _inner.has_buffer(target);
        /// <inheritdoc />
        public override Parameter? get_parameter(string target) => _inner.get_parameter(target);
        /// <inheritdoc />
        public override Tensor? get_buffer(string target) => _inner.get_buffer(target);
        /// <inheritdoc />
        public override void register_buffer(string name, Tensor tensor, bool persistent = true) => _inner.register_buffer(name, tensor, persistent);
        /// <inheritdoc />
        public override void register_parameter(string name, Parameter param) => _inner.register_parameter(name, param);
        /// <inheritdoc />
        public override void register_module(string name, nn.Module submodule) { _inner.register_module(name, submodule); _tree.Refresh(); }
        /// <inheritdoc />
        public override string GetName() => _inner.GetName();
        /// <summary>The facade has no components of its own: its fields must not become submodules of the wrapped model.</summary>
        protected override void RegisterComponents() { }
        /// <inheritdoc />
        protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking) { _inner.to(device, dtype, non_blocking); return this; }
        /// <inheritdoc />
        protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking) { _inner.to(deviceType, deviceIndex, non_blocking); return this; }
        /// <inheritdoc />
        protected override nn.Module _to(ScalarType dtype, bool non_blocking) { _inner.to(dtype, non_blocking); return this; }
        /// <inheritdoc />
        public override string ToString() => $"HookedModule({_inner})";
    }
}
