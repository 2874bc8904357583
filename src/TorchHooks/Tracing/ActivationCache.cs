using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>What an <see cref="ActivationCache"/> keeps: which modules, inputs and/or outputs, how, and how much.</summary>
    public sealed class CacheOptions
    {
        /// <summary>Cache the modules at these paths (exact <c>named_modules()</c> names; a trailing <c>*</c> matches a prefix, e.g. <c>layer1.*</c>). Null: no path condition.</summary>
        public IReadOnlyCollection<string>? Paths { get; init; }

        /// <summary>Cache the modules of these types (e.g. <c>typeof(Conv2d)</c>, subclasses included). Null: no type condition.</summary>
        public IReadOnlyCollection<Type>? Types { get; init; }

        /// <summary>Cache the modules for which this holds. Null: no condition. All given conditions must hold; none given: every module.</summary>
        public Func<HookPoint, bool>? Filter { get; init; }

        /// <summary>Whether module outputs are cached (default true).</summary>
        public bool Outputs { get; init; } = true;

        /// <summary>Whether module inputs are cached, as forward received them (default false).</summary>
        public bool Inputs { get; init; }
        /// <summary>
        /// Whether the gradients w.r.t. the selected modules' outputs are cached during backward (default false;
        /// TransformerLens' <c>incl_bwd</c>), keyed <c>path:grad</c>: the grad_output reaching each module, after its
        /// backward pre-hooks. While the cache captures, the backward-hooks concern wraps the selected modules' outputs
        /// that require grad (as a no-op full backward hook would). Run forward and backward inside the capture
        /// (<c>CacheActivations</c>; <c>RunWithCache</c> stops capturing before any backward). A gradient that would
        /// exceed <see cref="MaxBytes"/> is reported as a throwing backward hook is (by <c>Backward()</c> or the next forward).
        /// </summary>
        public bool Gradients { get; init; }

        /// <summary>Whether cached tensors are detached from the autograd graph (default true, as TransformerLens).</summary>
        public bool Detach { get; init; } = true;

        /// <summary>
        /// Whether cached tensors are copies (default true). A copy is not changed by in-place operations later in the
        /// forward (an in-place ReLU after a conv would otherwise rewrite the cached conv output, Captum #156). Off: the
        /// cache holds a new handle on the same storage (cheaper; still valid after the model disposes its tensor).
        /// </summary>
        public bool Clone { get; init; } = true;

        /// <summary>Move cached tensors to this device (e.g. CPU to free accelerator memory). Null: keep them where they are.</summary>
        public torch.Device? Device { get; init; }

        /// <summary>The most bytes the cache may hold (default: no limit). A tensor that would exceed it stops the forward call with an <see cref="InvalidOperationException"/>.</summary>
        public long MaxBytes { get; init; } = long.MaxValue;
    }

    /// <summary>Whether a cached tensor is a module's input or its output.</summary>
    public enum ActivationKind
    {
        /// <summary>A tensor forward received.</summary>
        Input,
        /// <summary>A tensor forward returned (after forward hooks).</summary>
        Output,
        /// <summary>The gradient w.r.t. a tensor forward returned (grad_output), cached during backward.</summary>
        Gradient,
    }

    /// <summary>One cached tensor, owned by its <see cref="ActivationCache"/>.</summary>
    public sealed class CachedActivation
    {
        internal CachedActivation(string key, string path, string moduleType, int callIndex, ActivationKind kind, int position, Tensor tensor)
        {
            Key = key; Path = path; ModuleType = moduleType; CallIndex = callIndex; Kind = kind; Position = position; Tensor = tensor;
        }

        /// <summary>The cache key: <c>path</c> for the first call's output, <c>path:input</c> for its input, <c>path:grad</c> for the gradient w.r.t. its output, <c>#k</c> appended for call k &gt; 0, <c>.i</c> for the i-th tensor (i &gt; 0) of a tuple.</summary>
        public string Key { get; }
        /// <summary>The module's path.</summary>
        public string Path { get; }
        /// <summary>The module's class name.</summary>
        public string ModuleType { get; }
        /// <summary>The module's call index within the outermost call.</summary>
        public int CallIndex { get; }
        /// <summary>Input, output or gradient.</summary>
        public ActivationKind Kind { get; }
        /// <summary>The tensor's position among the module's input or output tensors.</summary>
        public int Position { get; }
        /// <summary>The cached tensor (owned by the cache: valid until the cache is disposed).</summary>
        public Tensor Tensor { get; }
    }

    /// <summary>
    /// TransformerLens' <c>run_with_cache</c> for TorchSharp: the inputs and/or outputs of the modules matching a path,
    /// type or predicate filter, kept while a model runs. The cache <b>owns</b> its tensors: they are detached from
    /// every <c>DisposeScope</c> (TorchVision's ResNet disposes its intermediates inside its own scope; cached copies
    /// stay valid) and disposed with the cache.
    /// </summary>
    /// <example>
    /// <code>
    /// var (logits, cache) = model.RunWithCache(x, new CacheOptions { Paths = new[] { "layer1.0.conv1", "layer4.1.conv2" } });
    /// using (cache) using (logits)
    /// {
    ///     Tensor early = cache["layer1.0.conv1"], late = cache["layer4.1.conv2"];
    /// }
    /// </code>
    /// </example>
    /// <remarks>
    /// <para>No reference cycle: the model never references the cache; the cache references the model's modules only
    /// while it is capturing (until <see cref="Stop"/>), so a stopped cache keeps no model alive and vice versa
    /// (TransformerLens#290 leaks through such a cycle).</para>
    /// <para>Gradients (PyTorch's <c>incl_bwd</c>): <see cref="CacheOptions.Gradients"/>.</para>
    /// </remarks>
    public sealed class ActivationCache : IDisposable
    {
        private readonly object _gate = new();
        private readonly List<CachedActivation> _entries = new();
        private readonly Dictionary<string, CachedActivation> _byKey = new();
        private readonly CacheOptions _options;
        private Func<HookPoint, bool>? _wants;
        private Observer? _observer;
        private long _bytes;
        private bool _disposed;

        private sealed class Observer : CallObserver
        {
            private readonly ActivationCache _cache;
            public Observer(ActivationCache cache) => _cache = cache;
            public override bool Wants(HookPoint node) => _cache._wants?.Invoke(node) == true;
            public override bool CapturesGradients => _cache._options.Gradients;
            public override void Gradients(HookPoint node, int callIndex, Tensor?[] gradOutputs)
                => _cache.Add(new Call(node.Path, node.TypeName, callIndex), ActivationKind.Gradient, gradOutputs);
            public override object? Begin(CallFrame frame, object? args, object? parentToken, long timestamp) => new Call(frame.Node.Path, frame.Module.GetType().Name, frame.CallIndex);
            public override void End(object token, object? args, object? result, long timestamp, bool failed)
            {
                if (failed) return;
                var call = (Call)token;
                if (_cache._options.Inputs) _cache.Add(call, ActivationKind.Input, args);
                if (_cache._options.Outputs) _cache.Add(call, ActivationKind.Output, result);
            }
        }

        private sealed record Call(string Path, string ModuleType, int CallIndex);

        private ActivationCache(IHookedModule model, CacheOptions options)
        {
            _options = options;
            if (options.MaxBytes <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.MaxBytes, "CacheOptions.MaxBytes must be positive (the default is no limit).");
            if (!options.Inputs && !options.Outputs && !options.Gradients) throw new ArgumentException("CacheOptions caches neither inputs, outputs nor gradients: set Outputs = true (the default), Inputs = true and/or Gradients = true.", nameof(options));
            var tree = new HashSet<HookPoint>(model.Tree.HookPoints(), ReferenceEqualityComparer.Instance);
            if (options.Paths is { } paths)
            {
                var known = tree.Select(p => p.Path).ToHashSet();
                foreach (var p in paths)
                {
                    if (p is null) throw new ArgumentException("CacheOptions.Paths contains null; pass module paths such as \"layer1.0.conv1\".", nameof(options));
                    bool ok = p.EndsWith("*", StringComparison.Ordinal) ? known.Any(k => k.StartsWith(p[..^1], StringComparison.Ordinal)) : known.Contains(p);
                    if (!ok)
                        throw new ArgumentException($"CacheOptions.Paths: no module at '{p}'. Nearest valid paths: {string.Join(", ", model.Tree.Nearest(p).Select(n => $"'{n}'"))}.", nameof(options));
                }
            }
            var filter = options.Filter;
            var types = options.Types?.ToArray();
            var exact = options.Paths?.Where(p => !p.EndsWith("*", StringComparison.Ordinal)).ToHashSet();
            var prefixes = options.Paths?.Where(p => p.EndsWith("*", StringComparison.Ordinal)).Select(p => p[..^1]).ToArray();
            _wants = node => tree.Contains(node)
                && (exact is null || exact.Contains(node.Path) || prefixes!.Any(pre => node.Path.StartsWith(pre, StringComparison.Ordinal)))
                && (types is null || types.Any(t => t.IsInstanceOfType(node.Module)))
                && (filter is null || filter(node));
            _observer = new Observer(this);
            TracingConcern.Add(_observer);
        }

        /// <summary>Starts caching the activations of <paramref name="model"/>'s modules that <paramref name="options"/> selects.</summary>
        public static ActivationCache Start(IHookedModule model, CacheOptions? options = null)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass a facade from WithHooks().");
            return new ActivationCache(model, options ?? new CacheOptions());
        }

        /// <summary>Whether tensors are being cached (until <see cref="Stop"/> or <see cref="Dispose"/>).</summary>
        public bool IsCapturing => Volatile.Read(ref _observer) is not null;

        /// <summary>The cached tensors, in the order they were cached.</summary>
        public IReadOnlyList<CachedActivation> Entries { get { lock (_gate) return _entries.ToArray(); } }

        /// <summary>The keys, in the order they were cached (see <see cref="CachedActivation.Key"/>).</summary>
        public IReadOnlyList<string> Keys { get { lock (_gate) return _entries.Select(e => e.Key).ToArray(); } }

        /// <summary>How many tensors are cached.</summary>
        public int Count { get { lock (_gate) return _entries.Count; } }

        /// <summary>The bytes of the cached tensors.</summary>
        public long Bytes => Interlocked.Read(ref _bytes);

        /// <summary>The tensor cached under <paramref name="key"/> (e.g. <c>"layer1.0.conv1"</c>: its first call's output). The cache owns it.</summary>
        /// <exception cref="KeyNotFoundException">Nothing cached under that key; the message lists the nearest keys.</exception>
        public Tensor this[string key]
        {
            get
            {
                if (key is null) throw new ArgumentNullException(nameof(key), "Pass a cache key such as \"layer1.0.conv1\" (see Keys).");
                lock (_gate)
                {
                    ThrowIfDisposed();
                    if (_byKey.TryGetValue(key, out var e)) return e.Tensor;
                    var near = _byKey.Keys.OrderBy(k => k.StartsWith(key, StringComparison.Ordinal) ? 0 : 1).ThenBy(k => Math.Abs(k.Length - key.Length)).Take(3);
                    throw new KeyNotFoundException($"Nothing cached under '{key}'. Keys like it: {string.Join(", ", near.Select(k => $"'{k}'"))}. (Outputs are keyed by path, inputs by 'path:input'; later calls get '#1', '#2'…; check CacheOptions.Paths/Types/Filter and Inputs/Outputs.)");
                }
            }
        }

        /// <summary>Whether something is cached under <paramref name="key"/>.</summary>
        public bool ContainsKey(string key) { lock (_gate) return key is not null && _byKey.ContainsKey(key); }

        /// <summary>The cached tensors of the module at <paramref name="path"/>, every call, inputs and outputs.</summary>
        public IReadOnlyList<CachedActivation> Of(string path) { lock (_gate) return _entries.Where(e => e.Path == path).ToArray(); }

        /// <summary>Stops caching; what is cached stays until <see cref="Dispose"/>. The cache lets go of the model.</summary>
        public void Stop()
        {
            var observer = Interlocked.Exchange(ref _observer, null);
            if (observer is null) return;
            TracingConcern.Remove(observer);
            _wants = null;   // drops the model's modules: no cache → model reference remains
        }

        /// <summary>Removes and disposes every cached tensor; caching goes on if it was on.</summary>
        public void Clear()
        {
            lock (_gate)
            {
                foreach (var e in _entries) e.Tensor.Dispose();
                _entries.Clear();
                _byKey.Clear();
                _bytes = 0;
            }
        }

        /// <summary>Stops caching and disposes every cached tensor.</summary>
        public void Dispose()
        {
            Stop();
            lock (_gate)
            {
                if (_disposed) return;
                Clear();
                _disposed = true;
            }
        }

        private void ThrowIfDisposed()
        {
            if (_disposed) throw new ObjectDisposedException(nameof(ActivationCache), "The activation cache was disposed, and its tensors with it. Read them before disposing it (or clone the ones you keep).");
        }

        private void Add(Call call, ActivationKind kind, object? value)
        {
            var tensors = value switch
            {
                Tensor t => new[] { t },
                System.Runtime.CompilerServices.ITuple tuple => Enumerable.Range(0, tuple.Length).Select(i => tuple[i] as Tensor).ToArray(),
                IEnumerable<Tensor> many => many.ToArray(),
                _ => Array.Empty<Tensor?>(),
            };
            for (int i = 0; i < tensors.Length; i++)
            {
                if (tensors[i] is not { } t || t.IsInvalid) continue;
                string key = call.Path + (kind switch { ActivationKind.Input => ":input", ActivationKind.Gradient => ":grad", _ => "" }) + (i > 0 ? "." + i : "") + (call.CallIndex > 0 ? "#" + call.CallIndex : "");
                long bytes = t.numel() * TensorInfo.ElementSize(t.dtype);
                lock (_gate)
                {
                    if (_disposed) return;
                    if (_bytes + bytes > _options.MaxBytes)
                        throw new InvalidOperationException(
                            $"ActivationCache: caching '{key}' ({bytes:#,0} bytes, {TensorInfo.FormatShape(t.shape)} {t.dtype}) would exceed CacheOptions.MaxBytes = {_options.MaxBytes:#,0} " +
                            $"({_bytes:#,0} bytes in {_entries.Count} tensors cached so far). Narrow CacheOptions.Paths/Types/Filter, cache outputs only, or raise MaxBytes.");
                    var owned = Own(t);
                    var entry = new CachedActivation(key, call.Path, call.ModuleType, call.CallIndex, kind, i, owned);
                    if (_byKey.TryGetValue(key, out var old)) { _entries.Remove(old); _bytes -= old.Tensor.numel() * TensorInfo.ElementSize(old.Tensor.dtype); old.Tensor.Dispose(); }
                    _entries.Add(entry);
                    _byKey[key] = entry;
                    _bytes += bytes;
                }
            }
        }

        /// <summary>A tensor the cache owns: detached (default), copied (default), moved; out of every DisposeScope.</summary>
        private Tensor Own(Tensor t)
        {
            Tensor result;
            if (_options.Detach)
            {
                using var d = t.detach();
                result = _options.Clone ? d.clone() : d.detach();
            }
            else result = _options.Clone ? t.clone() : t.view_as(t);
            if (_options.Device is { } device && result.device != device)
            {
                var moved = result.to(device);
                result.Dispose();
                result = moved;
            }
            return result.DetachFromDisposeScope();
        }

        /// <inheritdoc />
        public override string ToString() => $"ActivationCache({Count} tensors, {Bytes:#,0} bytes{(IsCapturing ? ", capturing" : "")})";
    }

    /// <summary>Activation-cache entry points on a wrapped model.</summary>
    public static partial class ModuleExtensions
    {
        /// <summary>Starts an <see cref="ActivationCache"/> of this model's modules: <c>using var cache = model.CacheActivations(new() { Types = new[] { typeof(Conv2d) } });</c>.</summary>
        public static ActivationCache CacheActivations(this IHookedModule model, CacheOptions? options = null) => ActivationCache.Start(model, options);

        /// <summary>
        /// TransformerLens' <c>run_with_cache</c>: runs the model on <paramref name="input"/> and returns its output and the
        /// cache of the activations <paramref name="options"/> selects (capturing stops when the call returns). The caller
        /// owns both: dispose them.
        /// </summary>
        public static (TResult Output, ActivationCache Cache) RunWithCache<TResult>(this HookedModule<Tensor, TResult> model, Tensor input, CacheOptions? options = null)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call RunWithCache(x) on a facade from WithHooks().");
            if (input is null) throw new ArgumentNullException(nameof(input), "Pass the model's input tensor.");
            var cache = ActivationCache.Start(model, options);
            try
            {
                var output = model.call(input);
                cache.Stop();
                return (output, cache);
            }
            catch
            {
                cache.Dispose();
                throw;
            }
        }
    }
}
