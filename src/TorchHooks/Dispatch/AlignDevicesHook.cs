using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Accelerate's <c>AlignDevicesHook(execution_device, io_same_device, place_submodules)</c> (accelerate/hooks.py), the
    /// placement half (offload is <see cref="OffloadExtensions.Offload"/>): when attached, the module's parameters and
    /// buffers (its own; with <see cref="place_submodules"/>, its submodules' too) move to <see cref="execution_device"/>
    /// <em>keeping their objects</em>; at each call the input tensors (also inside tuples) move there; with
    /// <see cref="io_same_device"/> the output goes back to the device of the first input tensor.
    /// <see cref="DispatchExtensions.dispatch_model"/> attaches these hooks from a device map.
    /// </summary>
    /// <remarks>
    /// Differences from Accelerate: the tensors keep their objects (Accelerate's <c>set_module_tensor_to_device</c> makes
    /// new <c>Parameter</c>s, so an optimizer built before holds stale ones, Accelerate #3770) — between CPU and CUDA
    /// through libtorch's <c>set_data</c> (the native tensor too), to and from <c>meta</c> by exchanging the managed
    /// objects' native tensors (a module implemented in libtorch keeps its old reference there); removing the hook
    /// (<see cref="detach_hook"/>) moves them back where they were (Accelerate leaves them on the execution device) —
    /// from <c>meta</c> to the data they had, from any other device as a copy of their current values. Gradients do not
    /// move with a tensor (zero them first), and on the <c>meta</c> path an autograd graph built before the move
    /// accumulates into the native tensors as they were (run backward first). The input device of an <see cref="io_same_device"/> call is kept per thread,
    /// so nested and concurrent calls are safe. Moving out of <c>meta</c> is impossible (no data): such a move throws
    /// naming the module.
    /// </remarks>
    public sealed class AlignDevicesHook : ModelHook
    {
        [ThreadStatic] private static Stack<torch.Device?>? t_inputDevices;
        private readonly List<TensorPlacement> _placed = new();
        private readonly object _gate = new();

        /// <summary>A hook that runs the module on <paramref name="execution_device"/>.</summary>
        /// <param name="execution_device"><c>"cpu"</c>, <c>"cuda:N"</c> (or a GPU index) or <c>"meta"</c>.</param>
        /// <param name="io_same_device">Move the output back to the device of the first input tensor.</param>
        /// <param name="place_submodules">Also move the submodules' parameters and buffers when attached.</param>
        /// <exception cref="ArgumentException">An unknown device, or CUDA that is not present.</exception>
        public AlignDevicesHook(string execution_device, bool io_same_device = false, bool place_submodules = false)
            : this(DeviceNames.Parse(execution_device, nameof(execution_device)), io_same_device, place_submodules) { }

        /// <summary>A hook that runs the module on <paramref name="execution_device"/>.</summary>
        public AlignDevicesHook(torch.Device execution_device, bool io_same_device = false, bool place_submodules = false)
        {
            this.execution_device = execution_device ?? throw new ArgumentNullException(nameof(execution_device), "Pass a device, e.g. torch.CPU or torch.CUDA.");
            this.io_same_device = io_same_device;
            this.place_submodules = place_submodules;
        }

        /// <summary>Where the module's tensors live and its inputs are moved.</summary>
        public torch.Device execution_device { get; }

        /// <summary>Whether the output goes back to the first input tensor's device.</summary>
        public bool io_same_device { get; }

        /// <summary>Whether attaching places the submodules' tensors too (not only the module's own).</summary>
        public bool place_submodules { get; }

        /// <summary>
        /// Moves the module's tensors (with <see cref="place_submodules"/>, its submodules' too) to
        /// <see cref="execution_device"/>, keeping their objects; a tensor shared by several modules moves once. If one
        /// cannot move, those moved are moved back and the exception propagates (the hook is not attached).
        /// </summary>
        public override void init_hook(torch.nn.Module module)
        {
            var tensors = new List<(string Name, Tensor Tensor)>();
            tensors.AddRange(module.named_parameters(recurse: place_submodules).Select(p => (p.name, (Tensor)p.parameter)));
            tensors.AddRange(module.named_buffers(recurse: place_submodules).Select(b => (b.name, b.buffer)));
            foreach (var (name, t) in tensors)
                if (t.device_type == DeviceType.META && execution_device.type != DeviceType.META)
                    throw new InvalidOperationException($"'{name}' of {module.GetType().Name} is on meta (no data) and cannot be placed on {execution_device}: load the weights first (load_state_dict), or offload the module (map it to \"disk\").");
            lock (_gate)
            {
                var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
                try
                {
                    foreach (var (_, t) in tensors)
                        if (seen.Add(t) && TensorPlacement.Move(t, execution_device) is { } placed) _placed.Add(placed);
                }
                catch
                {
                    RestoreLocked();
                    throw;
                }
            }
        }

        /// <summary>Moves the tensors <see cref="init_hook"/> moved back where they were (the same objects).</summary>
        public override void detach_hook(torch.nn.Module module)
        {
            lock (_gate) RestoreLocked();
        }

        /// <inheritdoc />
        public override TArgs pre_forward<TArgs>(torch.nn.Module module, TArgs args)
        {
            var moved = CallHookValues.MapTensors(args, t =>
            {
                if (TensorPlacement.IsOn(t, execution_device)) return t;
                if (t.device_type == DeviceType.META)
                    throw new InvalidOperationException($"An input of {module.GetType().Name} is on meta (no data) and cannot move to its execution device, {execution_device}: give the model inputs with data, or place the module on meta too.");
                return t.to(execution_device);
            });
            if (io_same_device)
            {
                var inputs = CallHookValues.TensorsOf(args);
                (t_inputDevices ??= new Stack<torch.Device?>()).Push(inputs.Count > 0 ? inputs[0].device : null);
            }
            return moved;
        }

        /// <inheritdoc />
        public override TResult post_forward<TResult>(torch.nn.Module module, TResult output)
        {
            if (!io_same_device || t_inputDevices is not { Count: > 0 } stack || stack.Pop() is not { } back) return output;
            return CallHookValues.MapTensors(output, t =>
            {
                if (TensorPlacement.IsOn(t, back)) return t;
                if (t.device_type == DeviceType.META)
                    throw new InvalidOperationException($"The output of {module.GetType().Name} is on meta (no data) and cannot go back to {back}, where the inputs were (io_same_device): run the model with meta inputs, or place it on a device with data.");
                return t.to(back);
            });
        }

        /// <inheritdoc />
        public override void forward_failed(torch.nn.Module module)
        {
            if (io_same_device && t_inputDevices is { Count: > 0 } stack) stack.Pop();
        }

        private void RestoreLocked()
        {
            List<Exception>? errors = null;
            for (int i = _placed.Count - 1; i >= 0; i--)
            {
                try { _placed[i].Restore(); }
                catch (Exception e) { (errors ??= new()).Add(e); }
            }
            _placed.Clear();
            if (errors is not null) throw new AggregateException("Moving some tensors back to their devices failed.", errors);
        }

        /// <summary>The tensors this hook moved and has not moved back.</summary>
        internal int PlacedCount { get { lock (_gate) return _placed.Count; } }
    }
}
