using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// Describes tensors for a snapshot: dtype and shape as text, and the numeric fingerprint of an output
    /// (mean, population std, min, max, values at fixed positions, SHA-256 of the bytes). Statistics are computed in
    /// float64 on the CPU with autocast off, so they do not depend on the region the module ran in.
    /// </summary>
    internal static class Fingerprint
    {
        /// <summary>How many values are sampled: first, the quartiles and last (fewer for small tensors).</summary>
        public const int SampleCount = 5;

        /// <summary>PyTorch's dtype names: float32, bfloat16, int64, uint8, bool, ...</summary>
        public static string DtypeName(ScalarType dtype) => dtype switch
        {
            ScalarType.Byte => "uint8",
            ScalarType.Int8 => "int8",
            ScalarType.Int16 => "int16",
            ScalarType.Int32 => "int32",
            ScalarType.Int64 => "int64",
            ScalarType.Float16 => "float16",
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Float32 => "float32",
            ScalarType.Float64 => "float64",
            ScalarType.ComplexFloat32 => "complex64",
            ScalarType.ComplexFloat64 => "complex128",
            ScalarType.Bool => "bool",
            _ => dtype.ToString().ToLowerInvariant(),
        };

        /// <summary><c>float32[4, 3]</c>; a device other than the CPU is added (<c>float32[4, 3] cuda:0</c>).</summary>
        public static string Describe(Tensor t)
        {
            string text = DtypeName(t.dtype) + "[" + string.Join(", ", t.shape) + "]";
            return t.device_type == DeviceType.CPU ? text : text + " " + t.device.ToString().ToLowerInvariant();
        }

        /// <summary>The dtype part of a <see cref="Describe"/> text.</summary>
        public static string DtypeOf(string description)
        {
            int bracket = description.IndexOf('[');
            return bracket < 0 ? description : description.Substring(0, bracket);
        }

        /// <summary>The flat positions sampled in a tensor of <paramref name="n"/> elements.</summary>
        public static long[] SamplePositions(long n)
        {
            if (n <= 0) return Array.Empty<long>();
            int k = (int)Math.Min(SampleCount, n);
            if (k == 1) return new[] { 0L };
            return Enumerable.Range(0, k).Select(i => (long)Math.Round(i * (double)(n - 1) / (k - 1))).Distinct().ToArray();
        }

        public static OutputRecord Of(Tensor output)
        {
            var record = new OutputRecord { Tensor = Describe(output) };
            using var scope = torch.NewDisposeScope();
            using var noAutocast = Amp.autocast(DeviceType.CPU, enabled: false);
            using var noGrad = torch.no_grad();
            var cpu = output.detach().cpu().contiguous();
            record.Sha256 = Hash(cpu, record.Tensor);
            if (output.is_complex()) return record;   // statistics of real values only; the hash still covers it

            long n = cpu.numel();
            if (n == 0) return record;
            var values = cpu.to(ScalarType.Float64).flatten();
            record.Mean = values.mean().item<double>();
            record.Std = n > 1 ? values.std(unbiased: false).item<double>() : 0.0;
            record.Min = values.min().item<double>();
            record.Max = values.max().item<double>();
            record.Samples = new Dictionary<string, double>();
            foreach (long i in SamplePositions(n))
                record.Samples[i.ToString(CultureInfo.InvariantCulture)] = values[i].item<double>();
            return record;
        }

        private static string Hash(Tensor contiguousCpu, string description)
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            sha.AppendData(Encoding.UTF8.GetBytes(description));
            if (contiguousCpu.numel() > 0) sha.AppendData(contiguousCpu.bytes);
            return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
        }
    }
}
