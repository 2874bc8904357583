// The facades for TorchSharp modules with 2 to 6 inputs: the same members as HookedModule<T, TResult>
// (HookedModule.cs, documented there), with forward and the root hook registration at each arity.
using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;
using Parameter = TorchSharp.Modules.Parameter;

namespace TorchHooks
{
    /// <summary>
    /// The hook-aware facade of a TorchSharp model with 2 inputs: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T1, T2, TResult> : nn.Module<T1, T2, TResult>, IHookedModule
    {
        private readonly nn.Module<T1, T2, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T1, T2, TResult> inner) : base(inner.GetName())
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
        public nn.Module<T1, T2, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T1 input1, T2 input2)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input1, input2); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, inputs...)</c>; return null to keep
        /// the inputs or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T1, T2, HookResult<(T1, T2)>?> hook, bool prepend = false)
            => root.register_forward_pre_hook<T1, T2>(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, inputs..., output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T1, T2, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook<T1, T2, TResult>(hook, prepend, always_call);

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

    /// <summary>
    /// The hook-aware facade of a TorchSharp model with 3 inputs: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T1, T2, T3, TResult> : nn.Module<T1, T2, T3, TResult>, IHookedModule
    {
        private readonly nn.Module<T1, T2, T3, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T1, T2, T3, TResult> inner) : base(inner.GetName())
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
        public nn.Module<T1, T2, T3, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T1 input1, T2 input2, T3 input3)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input1, input2, input3); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, inputs...)</c>; return null to keep
        /// the inputs or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T1, T2, T3, HookResult<(T1, T2, T3)>?> hook, bool prepend = false)
            => root.register_forward_pre_hook<T1, T2, T3>(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, inputs..., output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T1, T2, T3, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook<T1, T2, T3, TResult>(hook, prepend, always_call);

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

    /// <summary>
    /// The hook-aware facade of a TorchSharp model with 4 inputs: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T1, T2, T3, T4, TResult> : nn.Module<T1, T2, T3, T4, TResult>, IHookedModule
    {
        private readonly nn.Module<T1, T2, T3, T4, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T1, T2, T3, T4, TResult> inner) : base(inner.GetName())
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
        public nn.Module<T1, T2, T3, T4, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T1 input1, T2 input2, T3 input3, T4 input4)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input1, input2, input3, input4); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, inputs...)</c>; return null to keep
        /// the inputs or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T1, T2, T3, T4, HookResult<(T1, T2, T3, T4)>?> hook, bool prepend = false)
            => root.register_forward_pre_hook<T1, T2, T3, T4>(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, inputs..., output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T1, T2, T3, T4, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook<T1, T2, T3, T4, TResult>(hook, prepend, always_call);

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

    /// <summary>
    /// The hook-aware facade of a TorchSharp model with 5 inputs: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T1, T2, T3, T4, T5, TResult> : nn.Module<T1, T2, T3, T4, T5, TResult>, IHookedModule
    {
        private readonly nn.Module<T1, T2, T3, T4, T5, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T1, T2, T3, T4, T5, TResult> inner) : base(inner.GetName())
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
        public nn.Module<T1, T2, T3, T4, T5, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T1 input1, T2 input2, T3 input3, T4 input4, T5 input5)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input1, input2, input3, input4, input5); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, inputs...)</c>; return null to keep
        /// the inputs or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T1, T2, T3, T4, T5, HookResult<(T1, T2, T3, T4, T5)>?> hook, bool prepend = false)
            => root.register_forward_pre_hook<T1, T2, T3, T4, T5>(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, inputs..., output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T1, T2, T3, T4, T5, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook<T1, T2, T3, T4, T5, TResult>(hook, prepend, always_call);

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

    /// <summary>
    /// The hook-aware facade of a TorchSharp model with 6 inputs: a <c>Module&lt;T, TResult&gt;</c> itself, so
    /// it drops in wherever the model was used (Sequential, optimizers, custom modules, save/load).
    /// Parameters, buffers, submodules, <c>state_dict</c> keys, <c>train/eval</c>, <c>to(...)</c> and
    /// <c>zero_grad</c> are the wrapped model's own, unchanged. Every module of the tree gets PyTorch's
    /// forward call path (<see cref="CallPath{TArgs,TResult}"/>); reach one with <c>facade["path"]</c>.
    /// </summary>
    /// <remarks>
    /// Hooks belong to the modules, not to the facade: they also fire when the unwrapped model is
    /// called. Disposing the facade does not dispose the wrapped model (its creator owns it).
    /// </remarks>
    public sealed class HookedModule<T1, T2, T3, T4, T5, T6, TResult> : nn.Module<T1, T2, T3, T4, T5, T6, TResult>, IHookedModule
    {
        private readonly nn.Module<T1, T2, T3, T4, T5, T6, TResult> _inner;
        private readonly ModuleTree _tree;

        internal HookedModule(nn.Module<T1, T2, T3, T4, T5, T6, TResult> inner) : base(inner.GetName())
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
        public nn.Module<T1, T2, T3, T4, T5, T6, TResult> module => _inner;

        /// <inheritdoc />
        public nn.Module Unwrap() => _inner;

        /// <summary>Runs the wrapped model's <c>call</c> with the full call path on every module of the tree.</summary>
        public override TResult forward(T1 input1, T2 input2, T3 input3, T4 input4, T5 input5, T6 input6)
        {
            var call = FacadeCall.Begin();
            try { return _inner.call(input1, input2, input3, input4, input5, input6); }
            catch (Exception e) { call.Fail(e); throw; }
            finally { call.End(); }
        }

        /// <summary>
        /// Registers a forward pre-hook on the wrapped model: <c>hook(module, inputs...)</c>; return null to keep
        /// the inputs or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_pre_hook(Func<nn.Module, T1, T2, T3, T4, T5, T6, HookResult<(T1, T2, T3, T4, T5, T6)>?> hook, bool prepend = false)
            => root.register_forward_pre_hook<T1, T2, T3, T4, T5, T6>(hook, prepend);

        /// <summary>
        /// Registers a forward hook on the wrapped model: <c>hook(module, inputs..., output)</c>; return null to
        /// keep the output or a value to replace it. See <see cref="HookPoint"/>.
        /// </summary>
        public RemovableHandle register_forward_hook(Func<nn.Module, T1, T2, T3, T4, T5, T6, TResult, HookResult<TResult>?> hook, bool prepend = false, bool always_call = false)
            => root.register_forward_hook<T1, T2, T3, T4, T5, T6, TResult>(hook, prepend, always_call);

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
