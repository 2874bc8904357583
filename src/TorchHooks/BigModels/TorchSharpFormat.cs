using System;
using System.Collections.Generic;
using System.IO;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Reads the layout of a file written by TorchSharp's <c>Module.save</c> (TorchSharp <c>src/TorchSharp/NN/Module.cs</c>,
    /// <c>save_state_dict</c>; <c>Tensor/TensorExtensionMethods.cs</c>, <c>Save</c>): a LEB128 entry count, then per entry a
    /// .NET <c>BinaryWriter</c> string (the key), the LEB128 dtype, the LEB128 rank and dimensions, and the raw
    /// little-endian data. Only the layout is read here (the data are skipped over and mapped later); a file that
    /// ends early, or has bytes after its last tensor, is refused.
    /// </summary>
    internal static class TorchSharpFormat
    {
        public static List<StoredTensor> Read(string path)
        {
            var full = Path.GetFullPath(path);
            if (!File.Exists(full)) throw new FileNotFoundException($"No TorchSharp Module.save file at '{full}'.", full);
            using var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
            using var reader = new BinaryReader(stream);
            long length = stream.Length;
            var tensors = new List<StoredTensor>();
            try
            {
                long count = Leb128(reader, full, "the entry count");
                for (long i = 0; i < count; i++)
                {
                    string name = reader.ReadString();
                    string where = $"'{full}', tensor '{name}' (entry {i})";
                    long code = Leb128(reader, full, where);
                    var dtype = (torch.ScalarType)code;
                    if (!Enum.IsDefined(typeof(torch.ScalarType), dtype)) throw new CheckpointFormatException($"{where}: dtype code {code} is not a TorchSharp ScalarType; the file is corrupt or not a Module.save file.");
                    long rank = Leb128(reader, full, where);
                    if (rank > 64) throw new CheckpointFormatException($"{where}: rank {rank}; the file is corrupt or not a Module.save file.");
                    var shape = new long[rank];
                    for (int d = 0; d < rank; d++) shape[d] = Leb128(reader, full, where);
                    long bytes = StoredTensor.CheckedBytes(where, dtype, shape);
                    long offset = stream.Position;
                    if (offset + bytes > length)
                        throw new CheckpointFormatException($"{where}: its {bytes} data bytes would end at byte {offset + bytes} but the file has {length}; the file is truncated.");
                    tensors.Add(new StoredTensor(name, dtype, shape, full, offset, bytes));
                    stream.Seek(bytes, SeekOrigin.Current);
                }
            }
            catch (EndOfStreamException e)
            {
                throw new CheckpointFormatException($"'{full}' ends in the middle of an entry header (after {tensors.Count} tensors); the file is truncated or not a Module.save file.", e);
            }
            catch (Exception e) when (e is IOException or FormatException)
            {
                throw new CheckpointFormatException($"'{full}': not a readable Module.save file ({e.Message}).", e);
            }
            if (stream.Position != length)
                throw new CheckpointFormatException($"'{full}': {length - stream.Position} bytes follow the last of its {tensors.Count} tensors; the file is corrupt or not a Module.save file.");
            return tensors;
        }

        private static long Leb128(BinaryReader reader, string file, string where)
        {
            long result = 0;
            for (int shift = 0; ; shift += 7)
            {
                if (shift > 56) throw new CheckpointFormatException($"'{file}', {where}: a LEB128 number longer than 9 bytes; the file is corrupt or not a Module.save file.");
                long b = reader.ReadByte();
                result |= (b & 0x7f) << shift;
                if ((b & 0x80) == 0) return result;
            }
        }
    }
}
