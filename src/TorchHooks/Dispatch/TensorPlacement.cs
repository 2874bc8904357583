using System;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// One parameter or buffer moved to another device while keeping its object (what an optimizer, a tied module or the
    /// user's variable holds), as PyTorch's <c>nn.Module._apply</c> does: between CPU and CUDA with <c>set_data</c>
    /// (<c>param.data = param.to(device)</c>; the native tensor itself takes the new storage, so a module implemented in
    /// libtorch that holds it sees the move too — <see cref="TensorData"/>); to and from <c>meta</c>, which
    /// <c>set_data</c> refuses, by copying and letting the two managed objects exchange their native tensors (PyTorch's
    /// <c>torch.utils.swap_tensors</c>, its path with <c>torch.__future__.set_swap_module_params_on_conversion(True)</c>).
    /// <c>set_</c> refuses another device ("the devices must match"); TorchSharp's <c>Module.to</c> makes new
    /// <c>Parameter</c> objects (Accelerate #3770's trap).
    /// </summary>
    internal sealed class TensorPlacement
    {
        private readonly Tensor _tensor;
        private readonly torch.Device _from;
        private readonly bool _inPlace;   // moved with set_data (dense to dense), else swapped
        private Tensor? _original;        // kept only when the new device cannot give the data back (meta)
        private bool _restored;

        private TensorPlacement(Tensor tensor, torch.Device from, bool inPlace, Tensor? original)
        {
            _tensor = tensor; _from = from; _inPlace = inPlace; _original = original;
        }

        /// <summary>Whether <paramref name="t"/> is on <paramref name="device"/> (an index-less device matches any index).</summary>
        public static bool IsOn(Tensor t, torch.Device device)
            => t.device_type == device.type && (device.index < 0 || t.device_index == device.index);

        /// <summary>
        /// Moves <paramref name="tensor"/> to <paramref name="device"/> in place (same object, same <c>requires_grad</c>);
        /// null when it is there already. Its gradient, if any, stays behind with the old native tensor.
        /// </summary>
        public static TensorPlacement? Move(Tensor tensor, torch.Device device)
        {
            if (IsOn(tensor, device)) return null;
            if (tensor.device_type == DeviceType.META)
                throw new InvalidOperationException($"A tensor on meta has no data to move to {device}: load the weights first (load_state_dict) or map the module to \"disk\" (offload).");
            var from = tensor.device;
            Tensor moved;
            using (torch.no_grad())
            using (var detached = tensor.detach())
                moved = detached.to(device);
            if (TensorData.Applies(tensor, moved))
            {
                try { TensorData.Set(tensor, moved); }   // the tensor's own TensorImpl now holds the device copy
                finally { moved.Dispose(); }
                return new TensorPlacement(tensor, from, inPlace: true, null);
            }
            try
            {
                if (tensor.requires_grad) moved.requires_grad_(true);
                moved.DetachFromDisposeScope();
            }
            catch { moved.Dispose(); throw; }
            TorchSharpInternals.SwapTensors(tensor, moved);   // tensor: the device copy; moved: the original
            if (device.type == DeviceType.META) return new TensorPlacement(tensor, from, inPlace: false, moved);
            moved.Dispose();
            return new TensorPlacement(tensor, from, inPlace: false, null);
        }

        /// <summary>
        /// Moves the tensor back where it was, in place: from <c>meta</c> to the original data (kept), from any other device
        /// as a copy of its current values (so training on the device is kept). Idempotent.
        /// </summary>
        public void Restore()
        {
            if (_restored) return;
            if (_inPlace)
            {
                using (torch.no_grad())
                using (var detached = _tensor.detach())
                using (var data = detached.to(_from))
                    TensorData.Set(_tensor, data);
                _restored = true;
                return;
            }
            Tensor back;
            if (_original is not null) back = _original;
            else
            {
                using (torch.no_grad())
                using (var detached = _tensor.detach())
                    back = detached.to(_from);
                if (_tensor.requires_grad) back.requires_grad_(true);
                back.DetachFromDisposeScope();
            }
            TorchSharpInternals.SwapTensors(_tensor, back);
            _original = null;
            _restored = true;
            back.Dispose();   // now the device copy
        }
    }
}
