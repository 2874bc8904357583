using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A per-module precision policy (PyTorch has no such concept; Keras calls it a dtype policy): the
    /// module's forward — and everything it calls — runs inside its own autocast region. Set one on a
    /// module of a wrapped tree with <see cref="HookPoint.SetPrecision"/>.
    /// </summary>
    /// <remarks>
    /// <para>The region covers forward only: the module's forward pre-hooks and forward hooks run outside
    /// it, like PyTorch's <c>@torch.autocast(...)</c> decorator on <c>forward</c>.</para>
    /// <para><see cref="Float32"/> disables autocast and casts the module's floating-point tensor inputs of
    /// lower precision to float32 (inside a bfloat16 region a norm or loss layer would otherwise compute on
    /// bfloat16 activations). The cast copies are disposed when the call ends unless forward returned one.</para>
    /// </remarks>
    public sealed class PrecisionPolicy
    {
        private PrecisionPolicy(DeviceType deviceType, ScalarType? dtype, bool enabled, bool castInputs)
        {
            device_type = deviceType; this.dtype = dtype; this.enabled = enabled; CastInputsToFloat32 = castInputs;
        }

        /// <summary>The device type whose autocast state the policy sets.</summary>
        public DeviceType device_type { get; }
        /// <summary>The autocast dtype inside the region (null: the device's current one).</summary>
        public ScalarType? dtype { get; }
        /// <summary>Whether autocast is enabled inside the region.</summary>
        public bool enabled { get; }
        /// <summary>Whether lower-precision floating inputs are cast to float32 before forward.</summary>
        public bool CastInputsToFloat32 { get; }

        /// <summary>
        /// Run the module under autocast: <paramref name="dtype"/> BFloat16 or Float16 (default: CPU BFloat16,
        /// CUDA Float16, as <see cref="Amp.autocast"/>).
        /// </summary>
        /// <exception cref="ArgumentException">Unsupported device type or dtype.</exception>
        public static PrecisionPolicy Autocast(DeviceType device_type = DeviceType.CPU, ScalarType? dtype = null)
        {
            AutocastStack.CheckDevice(device_type, nameof(device_type));
            var resolved = dtype ?? (device_type == DeviceType.CUDA ? ScalarType.Float16 : ScalarType.BFloat16);
            AutocastStack.CheckDtype(device_type, resolved, true, nameof(dtype));
            return new PrecisionPolicy(device_type, resolved, enabled: true, castInputs: false);
        }

        /// <summary>
        /// Run the module in float32 even inside an autocast region: autocast off for its forward, and its
        /// lower-precision floating tensor inputs cast to float32.
        /// </summary>
        public static PrecisionPolicy Float32(DeviceType device_type = DeviceType.CPU)
        {
            AutocastStack.CheckDevice(device_type, nameof(device_type));
            return new PrecisionPolicy(device_type, null, enabled: false, castInputs: true);
        }

        /// <summary>
        /// Opens the region (the precision step on the way in). libtorch's cast cache is keyed by tensor, not by target
        /// dtype: inside an enabled region of another dtype, a cached cast of a shared parameter would come back
        /// in the outer dtype. So a region whose dtype differs from an enclosing enabled region's runs with the
        /// cast cache off.
        /// </summary>
        internal AutocastToken Enter()
        {
            bool? cache = null;
            if (enabled && Amp.is_autocast_enabled(device_type) && Amp.get_autocast_dtype(device_type) != dtype) cache = false;
            var bit = AutocastStack.CheckDevice(device_type, nameof(device_type));
            return AutocastStack.Enter(bit, device_type, AutocastStack.CheckDtype(device_type, dtype, enabled, nameof(dtype)), enabled, cache, callRegion: true);
        }

        /// <summary>Casts lower-precision floating tensor inputs to float32; records the copies in <paramref name="created"/>.</summary>
        internal TArgs CastInputs<TArgs>(TArgs args, ref List<Tensor>? created)
        {
            if (!CastInputsToFloat32) return args;
            if (args is Tensor t) return (TArgs)(object)Cast(t, ref created);
            if (args is ITuple tuple)
            {
                var items = new object?[tuple.Length];
                bool changed = false;
                for (int i = 0; i < tuple.Length; i++)
                {
                    items[i] = tuple[i];
                    if (tuple[i] is Tensor ti) { var c = Cast(ti, ref created); changed |= !ReferenceEquals(c, ti); items[i] = c; }
                }
                return changed ? (TArgs)Activator.CreateInstance(typeof(TArgs), items)! : args;
            }
            return args;
        }

        private static Tensor Cast(Tensor t, ref List<Tensor>? created)
        {
            if (!t.is_floating_point() || t.dtype == ScalarType.Float32 || t.dtype == ScalarType.Float64) return t;
            var copy = t.to(ScalarType.Float32);
            (created ??= new List<Tensor>()).Add(copy);
            return copy;
        }

        /// <inheritdoc />
        public override string ToString() => enabled ? $"Autocast({device_type}, {dtype})" : $"Float32({device_type})";
    }

    /// <summary>
    /// The precision concern of the call path, the innermost one: on the way in, after every other step,
    /// the module's policy casts its inputs (Float32) and opens its autocast region; on the way out, first,
    /// the region closes and the cast copies are disposed, so forward hooks see the inputs as they were
    /// before the cast; on failure the same. Hooks run outside the region, like PyTorch's decorator form.
    /// </summary>
    internal sealed class PrecisionConcern : CallConcern
    {
        public static readonly PrecisionConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => node.Precision is not null;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>Per call: the open region, the inputs cast for forward, and the inputs before the cast.</summary>
        private sealed class State : CallState
        {
            public AutocastToken Region;
            public List<Tensor>? Cast;
            public object? ArgsBeforeCast;

            public override void Clear() { Region = default; Cast = null; ArgsBeforeCast = null; }

            /// <summary>Closes the region and disposes the cast inputs (except one forward returned).</summary>
            public void Close(object? result)
            {
                var region = Region;
                var cast = Cast;
                Region = default;
                Cast = null;
                try { region.Dispose(); }
                finally
                {
                    if (cast is not null)
                        foreach (var t in cast)
                            if (!ReferenceEquals(t, result)) t.Dispose();
                }
            }
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            public override void In(CallFrame frame, ref TArgs args)
            {
                if (frame.Node.Precision is not { } policy) return;
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                var before = args;
                args = policy.CastInputs(args, ref state.Cast);
                if (state.Cast is not null) state.ArgsBeforeCast = before;
                state.Region = policy.Enter();
            }

            // TorchSharp hands the post-hook the input forward received, which is the policy's float32 copy when
            // a Float32 policy cast it; that copy is disposed here, so later steps (the forward hooks) get the
            // input as it was before the cast (as with PyTorch's decorator form, where the cast happens inside forward).
            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                if (state.Cast is not null && state.ArgsBeforeCast is TArgs before) args = before;
                state.Close(result);
            }

            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                try { Unsafe.As<State>(frame.State(Instance.Slot))?.Close(null); }
                catch (Exception e) { suppressed.Add(e); }
            }
        }
    }

    // The precision policy's place on the per-module node (ModuleTree/HookPoint.cs).
    public abstract partial class HookPoint
    {
        private PrecisionPolicy? _precision;

        /// <summary>The module's precision policy, or null (see <see cref="SetPrecision"/>).</summary>
        public PrecisionPolicy? Precision => Volatile.Read(ref _precision);

        /// <summary>
        /// Runs this module's forward (and everything it calls) under <paramref name="policy"/>, e.g.
        /// <c>PrecisionPolicy.Autocast(DeviceType.CPU, ScalarType.BFloat16)</c> or <c>PrecisionPolicy.Float32()</c>
        /// for a norm or loss layer inside an autocast region. Replaces an earlier policy; removing the
        /// returned handle clears the policy if it is still this one.
        /// </summary>
        public RemovableHandle SetPrecision(PrecisionPolicy policy)
        {
            if (policy is null) throw new ArgumentNullException(nameof(policy), "Pass PrecisionPolicy.Autocast(...) or PrecisionPolicy.Float32(); remove the returned handle to clear it.");
            Volatile.Write(ref _precision, policy);
            Recompute();
            return new RemovableHandle(_ =>
            {
                Interlocked.CompareExchange(ref _precision, null, policy);
                Recompute();
            });
        }
    }
}
