using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
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
            device_type = deviceType; this.dtype = dtype; this.enabled = enabled; cast_inputs_to_float32 = castInputs;
        }

        /// <summary>The device type whose autocast state the policy sets.</summary>
        public DeviceType device_type { get; }
        /// <summary>The autocast dtype inside the region (null: the device's current one).</summary>
        public ScalarType? dtype { get; }
        /// <summary>Whether autocast is enabled inside the region.</summary>
        public bool enabled { get; }
        /// <summary>Whether lower-precision floating inputs are cast to float32 before forward.</summary>
        public bool cast_inputs_to_float32 { get; }

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
        /// Opens the region (step 3 of the call path). libtorch's cast cache is keyed by tensor, not by target
        /// dtype: inside an enabled region of another dtype, a cached cast of a shared parameter would come back
        /// in the outer dtype. So a region whose dtype differs from an enclosing enabled region's runs with the
        /// cast cache off.
        /// </summary>
        internal AutocastToken Enter()
        {
            bool? cache = null;
            if (enabled && Amp.is_autocast_enabled(device_type) && Amp.get_autocast_dtype(device_type) != dtype) cache = false;
            return Amp.Enter(device_type, dtype, enabled, cache);
        }

        /// <summary>Casts lower-precision floating tensor inputs to float32; records the copies in <paramref name="created"/>.</summary>
        internal TArgs CastInputs<TArgs>(TArgs args, ref List<Tensor>? created)
        {
            if (!cast_inputs_to_float32) return args;
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
}
