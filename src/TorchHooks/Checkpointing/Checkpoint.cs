using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Which modules of a wrapped model are checkpointed, and how: PyTorch's
    /// <c>apply_activation_checkpointing(model, check_fn=...)</c> with <c>torch.utils.checkpoint</c>'s options.
    /// Give any of <see cref="Paths"/>, <see cref="Types"/>, <see cref="Filter"/>; all given must hold.
    /// </summary>
    public sealed class CheckpointOptions
    {
        /// <summary>
        /// Checkpoint the modules at these paths (<c>named_modules()</c> names). <c>*</c> matches within one name:
        /// <c>blocks.*</c> is every child of <c>blocks</c> (not their submodules), <c>layers.*.attn</c> every layer's
        /// attention; <c>**</c> matches across dots (<c>blocks.**</c>: everything under <c>blocks</c>, nested
        /// checkpointing). Every pattern must match some module. Null: no path condition.
        /// </summary>
        public IReadOnlyCollection<string>? Paths { get; init; }

        /// <summary>Checkpoint the modules of these types (subclasses included). Null: no type condition.</summary>
        public IReadOnlyCollection<Type>? Types { get; init; }

        /// <summary>Checkpoint the modules for which this holds (PyTorch's <c>check_fn</c>). Null: no condition.</summary>
        public Func<HookPoint, bool>? Filter { get; init; }

        /// <summary>
        /// PyTorch's <c>preserve_rng_state</c> (default true): the CPU random-number state is saved when the module is
        /// called and restored for the recompute, so dropout draws the same mask twice; the caller's state is put back
        /// after the recompute (<c>torch.random.fork_rng</c>). False saves a 5 KB copy per call and is correct only for
        /// modules that draw no random numbers.
        /// </summary>
        public bool preserve_rng_state { get; init; } = true;

        /// <summary>
        /// Whether the recompute leaves the module's buffers as the first call left them (default false, as PyTorch).
        /// A module that updates buffers in forward — BatchNorm's running statistics in training mode — updates them
        /// again in the recompute under PyTorch's checkpoint (momentum applied twice). True copies the checkpointed
        /// module's buffers before the recompute and writes them back after it, so they are updated once, as without
        /// checkpointing (what fairscale's <c>checkpoint_wrapper</c> achieves with <c>patch_batchnorm</c>).
        /// </summary>
        public bool KeepBuffersInRecompute { get; init; }
    }

    /// <summary>
    /// A checkpointing policy applied to modules of a wrapped model (<see cref="ModuleExtensions.Checkpoint(IHookedModule, CheckpointOptions)"/>).
    /// Disposing it (or <see cref="remove"/>) stops checkpointing those modules, unless a later policy took them over;
    /// calls under way finish as they began.
    /// </summary>
    public sealed class CheckpointPolicy : IDisposable
    {
        private readonly RemovableHandle[] _handles;

        internal CheckpointPolicy(IReadOnlyList<HookPoint> modules, RemovableHandle[] handles)
        {
            Modules = modules;
            _handles = handles;
        }

        /// <summary>The modules this policy checkpoints, root first.</summary>
        public IReadOnlyList<HookPoint> Modules { get; }

        /// <summary>Whether the policy is in force (until removed).</summary>
        public bool IsRegistered => _handles.Any(h => h.IsRegistered);

        /// <summary>Stops checkpointing the modules (idempotent, never throws).</summary>
        public void remove()
        {
            foreach (var h in _handles) h.remove();
        }

        /// <summary>Same as <see cref="remove"/>.</summary>
        public void Dispose() => remove();

        /// <inheritdoc />
        public override string ToString() => $"CheckpointPolicy({Modules.Count} modules{(IsRegistered ? "" : ", removed")})";
    }

    public static partial class ModuleExtensions
    {
        /// <summary>
        /// Checkpoints the modules <paramref name="options"/> selects (PyTorch's <c>apply_activation_checkpointing</c>):
        /// each selected module's call keeps only its inputs, and its forward runs again in backward. Nested selections
        /// are allowed (an inner checkpointed module is recomputed inside its parent's recompute, as in PyTorch).
        /// All or none: the selection is checked before any module is changed.
        /// </summary>
        /// <exception cref="ArgumentException">A path pattern matches no module, or nothing is selected.</exception>
        public static CheckpointPolicy Checkpoint(this IHookedModule model, CheckpointOptions options)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Checkpoint(...) on a facade from WithHooks().");
            if (options is null) throw new ArgumentNullException(nameof(options), "Pass new CheckpointOptions { Paths = new[] { \"blocks.*\" } } (or Types, Filter).");
            var points = model.HookPoints();
            Func<string, bool>[]? patterns = null;
            if (options.Paths is { } paths)
            {
                patterns = new Func<string, bool>[paths.Count];
                int i = 0;
                foreach (var p in paths)
                {
                    if (string.IsNullOrEmpty(p)) throw new ArgumentException("CheckpointOptions.Paths contains a null or empty pattern; pass module paths such as \"blocks.*\" (the root itself: Filter = p => p.Path == \"\").", nameof(options));
                    var match = PathPattern(p);
                    if (!points.Any(n => match(n.Path)))
                        throw new ArgumentException($"CheckpointOptions.Paths: no module matches '{p}'. Nearest valid paths: {string.Join(", ", model.Tree.Nearest(p.Replace("*", "")).Select(n => $"'{n}'"))}.", nameof(options));
                    patterns[i++] = match;
                }
            }
            var types = options.Types?.ToArray();
            if (types is not null && types.Any(t => t is null))
                throw new ArgumentException("CheckpointOptions.Types contains null; pass module types such as typeof(Block).", nameof(options));
            var selected = points.Where(n =>
                    (patterns is null || patterns.Any(m => m(n.Path)))
                    && (types is null || types.Any(t => t.IsInstanceOfType(n.Module)))
                    && (options.Filter is null || options.Filter(n)))
                .ToList();
            if (selected.Count == 0)
                throw new ArgumentException("CheckpointOptions selects no module of this model (Paths, Types and Filter must all hold).", nameof(options));
            var handles = new RemovableHandle[selected.Count];
            for (int i = 0; i < selected.Count; i++) handles[i] = selected[i].SetCheckpoint(options);
            return new CheckpointPolicy(selected, handles);
        }

        /// <summary>Checkpoints the modules for which <paramref name="check_fn"/> holds, with the default options.</summary>
        public static CheckpointPolicy Checkpoint(this IHookedModule model, Func<HookPoint, bool> check_fn)
        {
            if (check_fn is null) throw new ArgumentNullException(nameof(check_fn), "Pass a condition, e.g. p => p.Module is Block.");
            return model.Checkpoint(new CheckpointOptions { Filter = check_fn });
        }

        /// <summary>A path pattern: <c>*</c> matches within one name (no dot), <c>**</c> any run of characters, dots included.</summary>
        internal static Func<string, bool> PathPattern(string pattern)
        {
            if (!pattern.Contains('*')) return path => path == pattern;
            var regex = "^" + Regex.Escape(pattern).Replace(@"\*\*", ".*").Replace(@"\*", "[^.]*") + "$";
            var compiled = new Regex(regex, RegexOptions.CultureInvariant);
            return compiled.IsMatch;
        }
    }

    // The checkpointing policy's place on the per-module node (Tree/HookPoint.cs).
    public abstract partial class HookPoint
    {
        private CheckpointOptions? _checkpoint;

        /// <summary>The options this module is checkpointed with, or null (see <see cref="SetCheckpoint"/>).</summary>
        public CheckpointOptions? Checkpointing => Volatile.Read(ref _checkpoint);

        /// <summary>
        /// Checkpoints this module (PyTorch's <c>checkpoint_wrapper(module)</c>): its calls keep only their inputs, and
        /// the call runs again in backward. <paramref name="options"/>' selection fields are ignored here. Replaces an
        /// earlier setting; removing the returned handle clears it if it is still this one.
        /// </summary>
        public RemovableHandle SetCheckpoint(CheckpointOptions? options = null)
        {
            var set = options ?? new CheckpointOptions();
            Volatile.Write(ref _checkpoint, set);
            Recompute();
            return new RemovableHandle(_ =>
            {
                Interlocked.CompareExchange(ref _checkpoint, null, set);
                Recompute();
            });
        }
    }
}
