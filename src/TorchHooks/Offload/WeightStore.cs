using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Where an offloaded module's weights live between its calls (Accelerate's <c>weights_map</c>): on disk
    /// (<see cref="Disk"/>: any <see cref="Checkpoint"/> — safetensors, sharded safetensors, Accelerate's offload
    /// folder, TorchSharp's <c>Module.save</c> — mapped per call where the tensor's offset is aligned, else read with positioned reads), or in host
    /// memory (<see cref="Host"/>). Keys are the model's <c>state_dict</c> names.
    /// </summary>
    public abstract class WeightStore : IDisposable
    {
        private protected WeightStore() { }

        /// <summary>Whether the store has <paramref name="key"/>.</summary>
        public abstract bool Contains(string key);

        /// <summary>The shape stored at <paramref name="key"/>.</summary>
        public abstract IReadOnlyList<long> Shape(string key);

        /// <summary>The dtype stored at <paramref name="key"/>.</summary>
        public abstract torch.ScalarType DType(string key);

        /// <summary>Copies the tensor at <paramref name="key"/> into <paramref name="destination"/> (contiguous CPU, same dtype and shape).</summary>
        internal abstract void ReadInto(string key, Tensor destination);

        /// <summary>Whether <see cref="Map"/> can serve <paramref name="key"/> without a copy (a disk store's tensor whose offset is aligned to its element size).</summary>
        internal virtual bool CanMap(string key) => false;

        /// <summary>The tensor at <paramref name="key"/> over a memory mapping of its file, no copy (only if <see cref="CanMap"/>; the caller disposes it).</summary>
        internal virtual Tensor Map(string key) => throw new NotSupportedException($"The store {this} cannot map '{key}'; read it with ReadInto.");

        /// <summary>Starts reading <paramref name="key"/>'s bytes from the disk in the background, if the store is on disk (advice; a read ahead's first step).</summary>
        internal virtual void WillNeed(string key) { }

        /// <summary>A store on disk: the tensors of <paramref name="checkpoint"/> (disposed with the store). Its files must not be writable by other users.</summary>
        /// <exception cref="UnauthorizedAccessException">A file or its folder can be written by other users (a sticky folder such as /tmp is fine).</exception>
        public static WeightStore Disk(Checkpoint checkpoint)
        {
            if (checkpoint is null) throw new ArgumentNullException(nameof(checkpoint), "Pass a checkpoint from Checkpoint.Open(path).");
            foreach (var file in checkpoint.Tensors.Select(t => t.File).Distinct())
            {
                RequireNotShared(file);
                RequireNotShared(Path.GetDirectoryName(file)!);
            }
            return new CheckpointStore(checkpoint);
        }

        /// <summary>
        /// A store in host memory: a copy of each tensor of <paramref name="state_dict"/>, owned by the store (Accelerate's
        /// <c>cpu_offload</c>; with a CUDA execution device the weights would be copied in per call — untested here).
        /// </summary>
        public static WeightStore Host(StateDict state_dict)
        {
            if (state_dict is null) throw new ArgumentNullException(nameof(state_dict), "Pass a state dict, e.g. model.StateDict().");
            var copies = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                foreach (var key in state_dict.Keys)
                {
                    var t = state_dict[key];
                    if (t.device_type == DeviceType.META) throw new ArgumentException($"The state dict's '{key}' is on meta (no data); load the weights first.", nameof(state_dict));
                    copies[key] = t.detach().to(DeviceType.CPU).contiguous().clone();
                }
            }
            catch
            {
                foreach (var c in copies.Values) c.Dispose();
                throw;
            }
            return new HostStore(copies);
        }

        private static void RequireNotShared(string path)
        {
            if (!(RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || RuntimeInformation.IsOSPlatform(OSPlatform.OSX))) return;
            var (_, mode) = UnixSecurity.Stat(path);
            const int groupOrOtherWrite = 0x12, sticky = 0x200;
            if ((mode & groupOrOtherWrite) != 0 && (mode & sticky) == 0)
                throw new UnauthorizedAccessException($"The weight store path '{path}' can be written by other users (mode {Convert.ToString(mode & 0xFFF, 8)}): they could change the weights the model runs. Run 'chmod go-w {path}', or copy the checkpoint to a private folder.");
        }

        /// <summary>Releases what the store holds (files, host copies).</summary>
        public abstract void Dispose();

        private sealed class CheckpointStore : WeightStore
        {
            private readonly Checkpoint _checkpoint;
            public CheckpointStore(Checkpoint checkpoint) { _checkpoint = checkpoint; }
            public override bool Contains(string key) => _checkpoint.Contains(key);
            public override IReadOnlyList<long> Shape(string key) => _checkpoint[key].shape;
            public override torch.ScalarType DType(string key) => _checkpoint[key].dtype;
            internal override void ReadInto(string key, Tensor destination) => _checkpoint.ReadInto(_checkpoint[key], destination);
            internal override bool CanMap(string key) => Checkpoint.CanMap(_checkpoint[key]);
            internal override void WillNeed(string key) => _checkpoint.WillNeed(_checkpoint[key]);
            internal override Tensor Map(string key) => _checkpoint.Map(_checkpoint[key]);
            public override void Dispose() => _checkpoint.Dispose();
            public override string ToString() => $"disk store: {_checkpoint}";
        }

        private sealed class HostStore : WeightStore
        {
            private readonly Dictionary<string, Tensor> _tensors;
            public HostStore(Dictionary<string, Tensor> tensors) { _tensors = tensors; }
            public override bool Contains(string key) => _tensors.ContainsKey(key);
            public override IReadOnlyList<long> Shape(string key) => _tensors[key].shape;
            public override torch.ScalarType DType(string key) => _tensors[key].dtype;
            internal override void ReadInto(string key, Tensor destination) { using (torch.no_grad()) destination.copy_(_tensors[key]); }
            public override void Dispose() { foreach (var t in _tensors.Values) t.Dispose(); _tensors.Clear(); }
            public override string ToString() => $"host store: {_tensors.Count} tensors";
        }
    }
}
