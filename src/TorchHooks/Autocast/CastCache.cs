using System;
using System.Collections.Generic;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Keeps libtorch's autocast cast cache (the lower-precision copies of float32 weights) from one autocast
    /// region to the next for the parameters of wrapped models, so that a region entered per call
    /// (<c>using (Amp.autocast(...)) model.call(x)</c>) does not cast every weight again. The copies are checked
    /// against each parameter's identity and libtorch version counter when the next outermost region begins:
    /// any change (an optimizer step, <c>load_state_dict</c>, any in-place op) drops the whole cache.
    /// docs/autocast.md, "Weight casts kept across regions", gives the exact rules and how they differ from PyTorch.
    /// </summary>
    /// <remarks>
    /// <para>libtorch caches the cast of a float32 leaf tensor that requires grad (in practice a parameter) made
    /// by an autocast op, keyed by the tensor, until <c>clear_cache</c>; PyTorch (and TorchHooks before this)
    /// clears it when the outermost region exits. The cache is one map for the whole process.</para>
    /// <para>What may be kept must be known to be a wrapped model's parameter. So an outermost region runs in one
    /// of two modes, chosen when it begins (per thread):</para>
    /// <list type="bullet">
    /// <item>PyTorch mode (the default): libtorch's cache flag as the region says; cleared at the outermost exit.</item>
    /// <item>Kept mode, when the thread's previous outermost region ran a facade call without grad: libtorch's
    /// cache is on only inside facade calls (the <em>gate</em>), so every cached cast was made inside a wrapped
    /// model's call; the parameters of those models are recorded with their versions at the call. At the
    /// outermost exit the cache is kept if every facade call of the region ran without grad and no recorded
    /// parameter changed during the region; otherwise cleared.</item>
    /// </list>
    /// </remarks>
    internal static class CastCache
    {
        // ---- per thread: the current outermost region ----
        [ThreadStatic] private static bool t_gated;          // the region runs in kept mode
        [ThreadStatic] private static int t_gateOpen;        // facade calls under way with the gate open
        [ThreadStatic] private static bool t_keepable;       // no facade call of the region ran with grad enabled
        [ThreadStatic] private static bool t_sawNoGradFacade; // a facade call ran without grad in the region
        [ThreadStatic] private static bool t_nextGated;      // the next outermost region runs in kept mode
        [ThreadStatic] private static List<torch.nn.Module>? t_roots;
        [ThreadStatic] private static List<(Tensor Tensor, long Version)>? t_recorded;

        // ---- per process (libtorch's cache is one map): what the kept cache holds ----
        private static readonly object s_lock = new();
        private static readonly Dictionary<IntPtr, (Tensor Tensor, long Version)> s_kept = new();
        private static DeviceType s_keptDevice;
        private static torch.ScalarType s_keptDtype;
        private static volatile bool s_hasKept;

        /// <summary>Whether libtorch's cache flag is forced off on this thread between facade calls (kept mode, gate closed).</summary>
        internal static bool GateClosed => t_gated && t_gateOpen == 0;

        /// <summary>The physical cache flag for a region whose cache_enabled is <paramref name="logical"/>.</summary>
        internal static bool Physical(bool logical) => logical && !GateClosed;

        /// <summary>
        /// Before the outermost region begins: drops the kept cache if a kept parameter changed, died, or the region
        /// would read the casts in another dtype (libtorch's cache is keyed by tensor, not by target dtype).
        /// </summary>
        internal static void BeforeOutermost(DeviceType device, torch.ScalarType dtype, bool enabled)
        {
            if (!s_hasKept) return;
            lock (s_lock)
            {
                if (!s_hasKept) return;
                bool valid = !enabled || (device == s_keptDevice && dtype == s_keptDtype);
                if (valid)
                    foreach (var (_, entry) in s_kept)
                        if (!Same(entry.Tensor, entry.Version)) { valid = false; break; }
                if (!valid) ClearLocked();
            }
        }

        /// <summary>The outermost region has begun: choose its mode. Returns the physical cache flag.</summary>
        internal static bool BeginOutermost(bool logicalCache, DeviceType device, torch.ScalarType dtype, bool enabled)
        {
            t_gated = t_nextGated && logicalCache && enabled;
            t_gateOpen = 0;
            t_keepable = true;
            t_sawNoGradFacade = false;
            if (t_gated) { s_regionDevice = device; s_regionDtype = dtype; }
            return Physical(logicalCache);
        }

        [ThreadStatic] private static DeviceType s_regionDevice;
        [ThreadStatic] private static torch.ScalarType s_regionDtype;

        /// <summary>The outermost region has exited (libtorch's nesting is back to 0): keep the cache or clear it.</summary>
        internal static void EndOutermost()
        {
            bool keep = t_gated && t_keepable && t_recorded is { Count: > 0 };
            if (keep)
            {
                foreach (var (t, v) in t_recorded!)
                    if (!Same(t, v)) { keep = false; break; }
            }
            if (keep)
            {
                lock (s_lock)
                {
                    if (s_hasKept && (s_keptDevice != s_regionDevice || s_keptDtype != s_regionDtype)) ClearLocked();
                    foreach (var (t, v) in t_recorded!) s_kept[t.Handle] = (t, v);
                    s_keptDevice = s_regionDevice;
                    s_keptDtype = s_regionDtype;
                    s_hasKept = true;
                }
            }
            else
            {
                Clear();
            }
            t_nextGated = t_sawNoGradFacade;
            t_gated = false;
            t_gateOpen = 0;
            t_roots?.Clear();
            t_recorded?.Clear();
        }

        /// <summary>
        /// An outermost facade call begins (FacadeCall). Inside an autocast region: records the model's parameters,
        /// opens the gate in kept mode. Returns whether it opened the gate (the caller passes it to <see cref="FacadeEnd"/>).
        /// </summary>
        internal static bool FacadeBegin(torch.nn.Module root)
        {
            if (AutocastStack.Depth == 0) return false;
            bool grad = torch.is_grad_enabled();
            if (grad) t_keepable = false;
            else t_sawNoGradFacade = true;
            if (!t_gated) return false;
            if (!grad) Record(root);
            t_gateOpen++;
            AutocastNative.SetAutocastCacheEnabled(AutocastStack.LogicalCacheEnabled);
            return true;
        }

        /// <summary>The facade call of a <see cref="FacadeBegin"/> that returned true has ended: close the gate.</summary>
        internal static void FacadeEnd()
        {
            if (t_gateOpen > 0 && --t_gateOpen == 0 && AutocastStack.Depth > 0)
                AutocastNative.SetAutocastCacheEnabled(Physical(AutocastStack.LogicalCacheEnabled));
        }

        private static void Record(torch.nn.Module root)
        {
            var roots = t_roots ??= new List<torch.nn.Module>();
            foreach (var r in roots) if (ReferenceEquals(r, root)) return;
            roots.Add(root);
            var recorded = t_recorded ??= new List<(Tensor, long)>();
            foreach (var p in root.parameters())
                recorded.Add((p, AutocastNative.TensorVersion(p)));
        }

        private static bool Same(Tensor t, long version)
            => !t.IsInvalid && AutocastNative.TensorVersion(t) == version;

        /// <summary>Clears libtorch's cast cache and forgets what was kept.</summary>
        internal static void Clear()
        {
            lock (s_lock) ClearLocked();
        }

        private static void ClearLocked()
        {
            AutocastNative.ClearAutocastCache();
            s_kept.Clear();
            s_hasKept = false;
        }

        /// <summary>Forgets this thread's mode: its next outermost region runs in PyTorch mode (tests; <c>ThreadCallState.Reset</c>).</summary>
        internal static void ResetThread()
        {
            t_nextGated = false;
            t_gated = false;
            t_gateOpen = 0;
            t_roots?.Clear();
            t_recorded?.Clear();
        }

        /// <summary>How many parameters' casts are kept (tests).</summary>
        internal static int KeptCount { get { lock (s_lock) return s_kept.Count; } }
    }
}
