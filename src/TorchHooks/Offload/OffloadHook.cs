using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The call-path hook of one offloaded module (Accelerate's <c>AlignDevicesHook(offload=True)</c>, on TorchHooks'
    /// public <see cref="ModelHook"/> seam): between calls the module's own parameters hold no storage (each is
    /// <c>set_</c> to an empty tensor, so the <c>Parameter</c> objects stay the same); <see cref="pre_forward{TArgs}"/>
    /// reads them from the store (or takes what the prefetcher read) and <c>set_</c>s them in; <see cref="post_forward{TResult}"/>
    /// and <see cref="forward_failed"/> release them again. <see cref="detach_hook"/> makes them resident for good.
    /// </summary>
    /// <remarks>
    /// Inference only: a call with grad enabled is refused naming the module (its gradients would be lost when the weights
    /// are released). While materialised, the parameters have <c>requires_grad</c> off, so libtorch's autocast never caches
    /// a lower-precision cast of them: a later call cannot be served a cast of released storage, and no cast outlives the call.
    /// </remarks>
    internal sealed class OffloadHook : ModelHook
    {
        internal sealed class Slot
        {
            public Parameter Param = null!;
            public string Name = "", Key = "";
            public long[] Shape = Array.Empty<long>();
            public torch.ScalarType DType;
            public bool RequiresGrad;
            public Tensor Empty = null!;
        }

        private readonly WeightStore _store;
        private readonly Prefetcher? _prefetcher;
        private readonly List<Slot> _slots;
        private readonly object _gate = new();
        private int _depth;   // nested or concurrent calls of the same module share one materialisation

        internal OffloadHook(string path, WeightStore store, List<Slot> slots, Prefetcher? prefetcher)
        {
            Path = path; _store = store; _slots = slots; _prefetcher = prefetcher;
            Bytes = slots.Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b) * StoredTensor.ElementSize(s.DType, s.Key));
        }

        /// <summary>The module's path.</summary>
        public string Path { get; }

        /// <summary>The bytes of the module's offloaded parameters.</summary>
        public long Bytes { get; }

        public override void init_hook(torch.nn.Module module)
        {
            using (torch.no_grad())
                foreach (var s in _slots) s.Param.set_(s.Empty);
        }

        public override TArgs pre_forward<TArgs>(torch.nn.Module module, TArgs args)
        {
            if (torch.is_grad_enabled())
                throw new InvalidOperationException($"Module '{Path}' ({module.GetType().Name}) has offloaded weights, which support inference only: its weights are released after the call, " +
                                                    "so gradients could not reach them. Run the model under torch.no_grad() (or torch.inference_mode()), or dispose the offload handle to make the weights resident and train.");
            lock (_gate)
            {
                if (_depth++ > 0) return args;
                try { Materialize(); }
                catch { _depth--; ReleaseLocked(); throw; }
            }
            _prefetcher?.Entered(this);
            return args;
        }

        public override TResult post_forward<TResult>(torch.nn.Module module, TResult output)
        {
            Release();
            return output;
        }

        public override void forward_failed(torch.nn.Module module) => Release();

        public override void detach_hook(torch.nn.Module module)
        {
            lock (_gate)
            {
                _depth = 0;
                using var _ = torch.no_grad();
                foreach (var s in _slots)
                {
                    using var fresh = torch.empty(s.Shape, s.DType, torch.CPU);
                    _store.ReadInto(s.Key, fresh);
                    s.Param.set_(fresh);
                    s.Param.requires_grad_(s.RequiresGrad);
                    s.Empty.Dispose();
                }
            }
        }

        /// <summary>New tensors for the module's weights, not yet read (<see cref="Fill"/>).</summary>
        internal Tensor[] Allocate()
        {
            var result = new Tensor[_slots.Count];
            for (int i = 0; i < _slots.Count; i++) result[i] = torch.empty(_slots[i].Shape, _slots[i].DType, torch.CPU);
            return result;
        }

        /// <summary>Reads the module's weights into <paramref name="tensors"/> (from <see cref="Allocate"/>; the prefetcher's thread, or the call's).</summary>
        internal void Fill(Tensor[] tensors)
        {
            for (int i = 0; i < _slots.Count; i++) _store.ReadInto(_slots[i].Key, tensors[i]);
        }

        /// <summary>Reads the module's weights into new tensors.</summary>
        internal Tensor[] ReadAll()
        {
            var result = Allocate();
            try { Fill(result); }
            catch { foreach (var t in result) t.Dispose(); throw; }
            return result;
        }

        private void Materialize()
        {
            var tensors = _prefetcher?.Take(this) ?? ReadAll();
            try
            {
                using var _ = torch.no_grad();
                for (int i = 0; i < _slots.Count; i++)
                {
                    _slots[i].Param.requires_grad_(false);
                    _slots[i].Param.set_(tensors[i]);
                }
            }
            finally
            {
                foreach (var t in tensors) t.Dispose();   // the parameters keep the storage
            }
        }

        private void Release()
        {
            lock (_gate)
            {
                if (_depth == 0 || --_depth > 0) return;
                ReleaseLocked();
            }
        }

        private void ReleaseLocked()
        {
            using var _ = torch.no_grad();
            foreach (var s in _slots)
            {
                s.Param.set_(s.Empty);
                s.Param.requires_grad_(s.RequiresGrad);
            }
        }

        /// <summary>Whether every parameter of the module is released (no storage).</summary>
        internal bool IsReleased => _slots.All(s => s.Param.numel() == 0);

        internal IReadOnlyList<Slot> Slots => _slots;
    }
}
