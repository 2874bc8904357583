using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// One tensor of a <see cref="Checkpoint"/>, as its file describes it: name, dtype, shape and where its raw
    /// little-endian bytes are (file, absolute offset, length). Reading it is <see cref="Checkpoint.Read"/>.
    /// </summary>
    public sealed class StoredTensor
    {
        internal StoredTensor(string name, torch.ScalarType dtype, long[] shape, string file, long offset, long byteCount)
        {
            Name = name; this.dtype = dtype; _shape = shape; File = file; Offset = offset; ByteCount = byteCount;
        }

        private readonly long[] _shape;

        /// <summary>The key (a <c>state_dict</c> name such as <c>encoder.0.weight</c>).</summary>
        public string Name { get; }
        /// <summary>The element type.</summary>
        public torch.ScalarType dtype { get; }
        /// <summary>The shape (empty for a 0-dimensional tensor).</summary>
        public IReadOnlyList<long> shape => _shape;
        /// <summary>The file holding the bytes.</summary>
        public string File { get; }
        /// <summary>Where the bytes start in <see cref="File"/>.</summary>
        public long Offset { get; }
        /// <summary>The number of bytes: <c>numel × element size</c>.</summary>
        public long ByteCount { get; }
        /// <summary>The number of elements.</summary>
        public long Numel => _shape.Aggregate(1L, (a, b) => a * b);

        internal long[] ShapeArray => (long[])_shape.Clone();

        /// <inheritdoc />
        public override string ToString() => $"{Name}: {dtype} {TensorInfo.FormatShape(_shape)} ({File} @ {Offset}, {ByteCount} bytes)";

        /// <summary>Bytes per element of the dtypes the checkpoint formats hold; throws for others.</summary>
        internal static int ElementSize(torch.ScalarType dtype, string where) => dtype switch
        {
            torch.ScalarType.Byte or torch.ScalarType.Int8 or torch.ScalarType.Bool => 1,
            torch.ScalarType.Int16 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16 => 2,
            torch.ScalarType.Int32 or torch.ScalarType.Float32 => 4,
            torch.ScalarType.Int64 or torch.ScalarType.Float64 or torch.ScalarType.ComplexFloat32 => 8,
            torch.ScalarType.ComplexFloat64 => 16,
            _ => throw new CheckpointFormatException($"{where}: dtype {dtype} is not supported by the checkpoint reader (supported: float64/32/16, bfloat16, int64/32/16/8, uint8, bool, complex64/128)."),
        };

        /// <summary>Checks a declared shape (no negative or overflowing dimension); returns its byte count.</summary>
        internal static long CheckedBytes(string where, torch.ScalarType dtype, long[] shape)
        {
            long n = 1;
            foreach (var d in shape)
            {
                if (d < 0) throw new CheckpointFormatException($"{where}: the shape [{string.Join(", ", shape)}] has a negative dimension; the file is corrupt.");
                try { n = checked(n * d); }
                catch (OverflowException) { throw new CheckpointFormatException($"{where}: the shape [{string.Join(", ", shape)}] overflows; the file is corrupt."); }
            }
            try { return checked(n * ElementSize(dtype, where)); }
            catch (OverflowException) { throw new CheckpointFormatException($"{where}: the shape [{string.Join(", ", shape)}] overflows; the file is corrupt."); }
        }
    }

    /// <summary>A checkpoint file or folder that is not what its format says: truncated, corrupt, or lying about its offsets.</summary>
    public sealed class CheckpointFormatException : Exception
    {
        /// <summary>Creates the exception.</summary>
        public CheckpointFormatException(string message) : base(message) { }
        /// <summary>Creates the exception with its cause.</summary>
        public CheckpointFormatException(string message, Exception inner) : base(message, inner) { }
    }
}
