using System;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>Device names of a device map (<see cref="DispatchExtensions.dispatch_model"/>): checked before anything moves.</summary>
    internal static class DeviceNames
    {
        /// <summary>Accelerate's offload entry: weights in a <see cref="WeightStore"/>, executed on the main device.</summary>
        public const string Disk = "disk";

        /// <summary>
        /// The device a map value names: <c>cpu</c>, <c>meta</c>, <c>cuda</c>, <c>cuda:N</c>, or a bare GPU index <c>N</c>
        /// (Accelerate's integer values) — refused, naming <paramref name="what"/>, if unknown or (CUDA) not present.
        /// </summary>
        public static torch.Device Parse(string? name, string what)
        {
            if (string.IsNullOrWhiteSpace(name))
                throw new ArgumentException($"{what} has no device: use \"cpu\", \"cuda:N\", \"meta\" or \"disk\".");
            string s = name!.Trim();
            if (int.TryParse(s, out int gpu) && gpu >= 0) s = "cuda:" + gpu;
            var match = System.Text.RegularExpressions.Regex.Match(s, @"^(cpu|meta|cuda)(?::(\d{1,4}))?$");
            if (!match.Success)
                throw new ArgumentException($"{what} names the unknown device \"{name}\": use \"cpu\", \"cuda:N\" (or a GPU index N), \"meta\" or \"disk\".");
            if (match.Groups[1].Value == "cuda")
            {
                // checked before libtorch parses it: TorchSharp's CPU-only runtime refuses to make a CUDA device at all
                if (!torch.cuda.is_available())
                    throw new ArgumentException($"{what} names \"{name}\", but CUDA is not available in this process (no GPU, or TorchSharp's CPU-only runtime): map it to \"cpu\" or \"disk\", or install a CUDA runtime package.");
                int count = torch.cuda.device_count();
                if (match.Groups[2].Success && int.Parse(match.Groups[2].Value) >= count)
                    throw new ArgumentException($"{what} names \"{name}\", but this process sees {count} CUDA device(s) (cuda:0..cuda:{count - 1}): use one of them.");
            }
            return torch.device(s);
        }
    }
}
