using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks
{
    /// <summary>
    /// Dynamic loss scaling for float16 mixed-precision training, like PyTorch's <c>torch.amp.GradScaler</c>:
    /// multiply the loss by a scale factor before backward so small float16 gradients don't flush to zero, divide
    /// the gradients by it before the optimizer step, skip steps whose gradients overflowed (inf/NaN) and shrink
    /// the scale then, grow it after <see cref="get_growth_interval"/> overflow-free steps.
    /// </summary>
    /// <example>
    /// <code>
    /// var scaler = new GradScaler();
    /// foreach (var (x, y) in batches)
    /// {
    ///     optimizer.zero_grad();
    ///     using var d = torch.NewDisposeScope();
    ///     Tensor loss;
    ///     using (Amp.autocast(DeviceType.CPU, ScalarType.Float16))
    ///         loss = mse_loss(model.call(x), y);
    ///     scaler.scale(loss).backward();
    ///     scaler.step(optimizer);      // unscales, skips the step if a gradient is inf/NaN
    ///     scaler.update();
    /// }
    /// </code>
    /// </example>
    /// <remarks>
    /// Differences from PyTorch: the scale and growth tracker are kept on the host (PyTorch keeps them in device
    /// tensors; both read them back once per step), so there is no device argument; <see cref="step"/> returns whether
    /// the optimizer stepped instead of the optimizer's return value; optimizer closures are not supported (PyTorch
    /// refuses them too when enabled). Parameters (and so gradients) must not be float16: keep float32 master
    /// weights and let autocast produce float16 activations.
    /// </remarks>
    public sealed class GradScaler
    {
        private enum OptState { Ready, Unscaled, Stepped }

        private sealed class PerOptimizer
        {
            public OptState Stage;
            public bool? FoundInf;
        }

        private readonly bool _enabled;
        private double _initScale;
        private float? _scale;           // created by the first scale() call, like PyTorch's lazily created tensor
        private int _growthTracker;
        private double _growthFactor;
        private double _backoffFactor;
        private int _growthInterval;
        private readonly Dictionary<optim.Optimizer, PerOptimizer> _perOptimizer =
            new Dictionary<optim.Optimizer, PerOptimizer>(ReferenceEqualityComparer.Instance);

        /// <summary>Creates a scaler with PyTorch's defaults.</summary>
        /// <param name="init_scale">Initial scale factor (2^16).</param>
        /// <param name="growth_factor">Factor the scale is multiplied by after <paramref name="growth_interval"/>
        /// consecutive steps without inf/NaN gradients (must be &gt; 1).</param>
        /// <param name="backoff_factor">Factor the scale is multiplied by when a step had inf/NaN gradients (in (0, 1)).</param>
        /// <param name="growth_interval">Consecutive overflow-free steps before the scale grows (&gt;= 1).</param>
        /// <param name="enabled">False makes every method a pass-through: <see cref="scale(Tensor)"/> returns its input,
        /// <see cref="step"/> just steps, <see cref="get_scale"/> is 1.</param>
        public GradScaler(double init_scale = 65536.0, double growth_factor = 2.0, double backoff_factor = 0.5,
            int growth_interval = 2000, bool enabled = true)
        {
            _enabled = enabled;
            if (enabled)
            {
                CheckInitScale(init_scale, nameof(init_scale));
                CheckGrowthFactor(growth_factor);
                CheckBackoffFactor(backoff_factor);
                CheckGrowthInterval(growth_interval);
            }
            _initScale = init_scale;
            _growthFactor = growth_factor;
            _backoffFactor = backoff_factor;
            _growthInterval = growth_interval;
        }

        /// <summary>Whether the scaler is enabled.</summary>
        public bool is_enabled() => _enabled;

        /// <summary>
        /// Returns <paramref name="outputs"/> multiplied by the scale factor (a new tensor the caller owns; call
        /// <c>backward()</c> on it). When disabled, returns <paramref name="outputs"/> itself.
        /// </summary>
        public Tensor scale(Tensor outputs)
        {
            if (outputs is null) throw new ArgumentNullException(nameof(outputs));
            if (!_enabled) return outputs;
            _scale ??= (float)_initScale;
            return outputs.mul((double)_scale.Value);
        }

        /// <summary>Scales every tensor of <paramref name="outputs"/> (see <see cref="scale(Tensor)"/>).</summary>
        public IReadOnlyList<Tensor> scale(IEnumerable<Tensor> outputs)
        {
            if (outputs is null) throw new ArgumentNullException(nameof(outputs));
            var list = new List<Tensor>();
            foreach (var t in outputs) list.Add(scale(t));
            return list;
        }

        /// <summary>
        /// Divides the gradients of <paramref name="optimizer"/>'s parameters by the scale factor, in place, and
        /// records whether any of them is inf/NaN. Call it before modifying gradients (e.g. clipping) between
        /// <c>backward()</c> and <see cref="step"/>. At most once per optimizer per <see cref="update"/>.
        /// </summary>
        /// <exception cref="InvalidOperationException">Called twice for the optimizer since the last update, after
        /// <see cref="step"/>, before any <see cref="scale(Tensor)"/>, or with float16 gradients.</exception>
        public void unscale_(optim.Optimizer optimizer)
        {
            if (optimizer is null) throw new ArgumentNullException(nameof(optimizer));
            if (!_enabled) return;
            CheckScaleCreated(nameof(unscale_));
            var state = StateOf(optimizer);
            if (state.Stage == OptState.Unscaled)
                throw new InvalidOperationException("unscale_() has already been called on this optimizer since the last update().");
            if (state.Stage == OptState.Stepped)
                throw new InvalidOperationException("unscale_() is being called after step().");

            // Like PyTorch: the reciprocal in double, then rounded to float32.
            double invScale = (float)(1.0 / _scale!.Value);
            state.FoundInf = UnscaleGrads(optimizer, invScale);
            state.Stage = OptState.Unscaled;
        }

        /// <summary>
        /// Divides every gradient by the scale; returns whether any is inf/NaN, or null if the optimizer has no
        /// gradient at all (nothing was checked). All or nothing: every gradient is checked for float16 first, so a
        /// rejected call changes no gradient and a retry does not unscale any twice.
        /// </summary>
        private static bool? UnscaleGrads(optim.Optimizer optimizer, double invScale)
        {
            var grads = new List<Tensor>();
            foreach (var p in optimizer.parameters())
            {
                var grad = p.grad;
                if (grad is null) continue;
                if (grad.dtype == ScalarType.Float16)
                    throw new InvalidOperationException(
                        "Attempting to unscale FP16 gradients. Keep the parameters in float32 (autocast casts them to " +
                        "float16 per op) so that their gradients are float32. No gradient was unscaled.");
                grads.Add(grad);
            }
            if (grads.Count == 0) return null;
            bool foundInf = false;
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            foreach (var grad in grads)
            {
                if (!foundInf)
                {
                    using var finite = grad.isfinite().all();
                    foundInf = !finite.item<bool>();
                }
                grad.mul_(invScale);
            }
            return foundInf;
        }

        /// <summary>
        /// Unscales the gradients (unless <see cref="unscale_"/> already did) and calls
        /// <c>optimizer.step()</c> only if none of them is inf/NaN.
        /// </summary>
        /// <returns>True if the optimizer stepped, false if the step was skipped.</returns>
        /// <exception cref="InvalidOperationException">Called twice for the optimizer since the last update, before
        /// any <see cref="scale(Tensor)"/>, or when none of the optimizer's parameters has a gradient (PyTorch asserts
        /// "No inf checks were recorded for this optimizer.").</exception>
        public bool step(optim.Optimizer optimizer)
        {
            if (optimizer is null) throw new ArgumentNullException(nameof(optimizer));
            if (!_enabled)
            {
                optimizer.step()?.Dispose();
                return true;
            }
            CheckScaleCreated(nameof(step));
            var state = StateOf(optimizer);
            if (state.Stage == OptState.Stepped)
                throw new InvalidOperationException("step() has already been called since the last update().");
            if (state.Stage == OptState.Ready) unscale_(optimizer);
            if (state.FoundInf is null)
                throw new InvalidOperationException(
                    "No inf checks were recorded for this optimizer. None of its parameters has a gradient: call " +
                    "scaler.scale(loss).backward() before step(optimizer), and check that the optimizer holds the model's parameters.");
            bool stepped = state.FoundInf == false;
            if (stepped) optimizer.step()?.Dispose();
            state.Stage = OptState.Stepped;
            return stepped;
        }

        /// <summary>
        /// Updates the scale factor at the end of an iteration: if any optimizer stepped over inf/NaN gradients since
        /// the last update, multiplies it by the backoff factor and resets the growth tracker; otherwise counts a
        /// successful step and, after <see cref="get_growth_interval"/> of them, multiplies it by the growth factor
        /// (if the result is finite). With <paramref name="new_scale"/>, sets the scale to that value instead.
        /// </summary>
        /// <exception cref="InvalidOperationException">No <see cref="step"/> or <see cref="unscale_"/> since the last
        /// update, or no <see cref="scale(Tensor)"/> yet.</exception>
        public void update(double? new_scale = null)
        {
            if (!_enabled) return;
            CheckScaleCreated(nameof(update));
            if (new_scale is { } ns)
            {
                CheckInitScale(ns, nameof(new_scale));
                _scale = (float)ns;
            }
            else
            {
                bool any = false, foundInf = false;
                foreach (var s in _perOptimizer.Values)
                {
                    if (s.FoundInf is not { } f) continue;
                    any = true;
                    foundInf |= f;
                }
                if (!any)
                    throw new InvalidOperationException(
                        "No inf checks were recorded prior to update(). Call step(optimizer) (or unscale_(optimizer)) " +
                        "after backward and before update().");
                UpdateScale(foundInf);
            }
            _perOptimizer.Clear();
        }

        // PyTorch's _amp_update_scale_ kernel, in float32 like its scale tensor.
        private void UpdateScale(bool foundInf)
        {
            float current = _scale!.Value;
            if (foundInf)
            {
                _scale = (float)(current * _backoffFactor);
                _growthTracker = 0;
                return;
            }
            int successful = _growthTracker + 1;
            if (successful == _growthInterval)
            {
                float grown = (float)(current * _growthFactor);
                if (float.IsFinite(grown)) _scale = grown;
                _growthTracker = 0;
            }
            else
            {
                _growthTracker = successful;
            }
        }

        /// <summary>The current scale factor (the initial scale before the first <see cref="scale(Tensor)"/>; 1 when disabled).</summary>
        public double get_scale() => !_enabled ? 1.0 : _scale is { } s ? s : _initScale;

        /// <summary>Consecutive overflow-free steps counted towards the next growth.</summary>
        public int get_growth_tracker() => _growthTracker;

        /// <summary>The growth factor.</summary>
        public double get_growth_factor() => _growthFactor;

        /// <summary>Sets the growth factor (must be &gt; 1).</summary>
        public void set_growth_factor(double new_factor)
        {
            CheckGrowthFactor(new_factor, nameof(new_factor));
            _growthFactor = new_factor;
        }

        /// <summary>The backoff factor.</summary>
        public double get_backoff_factor() => _backoffFactor;

        /// <summary>Sets the backoff factor (in (0, 1)).</summary>
        public void set_backoff_factor(double new_factor)
        {
            CheckBackoffFactor(new_factor, nameof(new_factor));
            _backoffFactor = new_factor;
        }

        /// <summary>The growth interval.</summary>
        public int get_growth_interval() => _growthInterval;

        /// <summary>Sets the growth interval (&gt;= 1).</summary>
        public void set_growth_interval(int new_interval)
        {
            CheckGrowthInterval(new_interval, nameof(new_interval));
            _growthInterval = new_interval;
        }

        /// <summary>
        /// The scaler's state with PyTorch's keys: <c>scale</c>, <c>growth_factor</c>, <c>backoff_factor</c> (double),
        /// <c>growth_interval</c>, <c>_growth_tracker</c> (int). Empty when disabled.
        /// </summary>
        public Dictionary<string, object> state_dict()
        {
            if (!_enabled) return new Dictionary<string, object>();
            return new Dictionary<string, object>
            {
                ["scale"] = get_scale(),
                ["growth_factor"] = _growthFactor,
                ["backoff_factor"] = _backoffFactor,
                ["growth_interval"] = _growthInterval,
                ["_growth_tracker"] = _growthTracker,
            };
        }

        /// <summary>Loads a state produced by <see cref="state_dict"/> (values may be any numeric type). No-op when disabled.</summary>
        /// <exception cref="ArgumentException">The dictionary is empty (saved from a disabled scaler), lacks a key, or
        /// holds an invalid value.</exception>
        public void load_state_dict(IReadOnlyDictionary<string, object> state_dict)
        {
            if (state_dict is null) throw new ArgumentNullException(nameof(state_dict));
            if (!_enabled) return;
            if (state_dict.Count == 0)
                throw new ArgumentException(
                    "The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler.",
                    nameof(state_dict));
            double scale = ReadDouble(state_dict, "scale");
            double growth = ReadDouble(state_dict, "growth_factor");
            double backoff = ReadDouble(state_dict, "backoff_factor");
            int interval = (int)ReadDouble(state_dict, "growth_interval");
            int tracker = (int)ReadDouble(state_dict, "_growth_tracker");
            CheckInitScale(scale, nameof(state_dict));
            CheckGrowthFactor(growth, nameof(state_dict));
            CheckBackoffFactor(backoff, nameof(state_dict));
            CheckGrowthInterval(interval, nameof(state_dict));
            if (tracker < 0)
                throw new ArgumentException($"state_dict[\"_growth_tracker\"] must be >= 0, got {tracker}.", nameof(state_dict));

            _initScale = scale;
            if (_scale.HasValue) _scale = (float)scale;
            _growthFactor = growth;
            _backoffFactor = backoff;
            _growthInterval = interval;
            _growthTracker = tracker;
        }

        private static double ReadDouble(IReadOnlyDictionary<string, object> d, string key)
        {
            if (!d.TryGetValue(key, out var v) || v is null)
                throw new ArgumentException($"state_dict has no \"{key}\" entry; pass a dictionary made by GradScaler.state_dict().", nameof(state_dict));
            try
            {
                return Convert.ToDouble(v, System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
            {
                throw new ArgumentException($"state_dict[\"{key}\"] is not a number: {v}.", nameof(state_dict), e);
            }
        }

        private PerOptimizer StateOf(optim.Optimizer optimizer)
        {
            if (!_perOptimizer.TryGetValue(optimizer, out var s))
                _perOptimizer[optimizer] = s = new PerOptimizer();
            return s;
        }

        private void CheckScaleCreated(string funcname)
        {
            if (_scale is null)
                throw new InvalidOperationException(
                    $"Attempted {funcname} but the scale was never used. This may indicate your script did not use " +
                    "scaler.scale(loss or outputs) earlier in the iteration.");
        }

        private static void CheckInitScale(double value, string name)
        {
            if (!(value > 0) || double.IsInfinity(value) || !float.IsFinite((float)value))
                throw new ArgumentOutOfRangeException(name, value, "The scale must be a positive finite float32 value.");
        }

        private static void CheckGrowthFactor(double value, string name = "growth_factor")
        {
            if (!(value > 1.0) || double.IsInfinity(value))
                throw new ArgumentOutOfRangeException(name, value, "The growth factor must be > 1.0.");
        }

        private static void CheckBackoffFactor(double value, string name = "backoff_factor")
        {
            if (!(value > 0.0 && value < 1.0))
                throw new ArgumentOutOfRangeException(name, value, "The backoff factor must be > 0.0 and < 1.0.");
        }

        private static void CheckGrowthInterval(int value, string name = "growth_interval")
        {
            if (value < 1)
                throw new ArgumentOutOfRangeException(name, value, "The growth interval must be >= 1.");
        }
    }
}
