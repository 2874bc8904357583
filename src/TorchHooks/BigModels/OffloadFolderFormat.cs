using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Reads Accelerate's offload folder (<c>accelerate/utils/offload.py</c>: <c>offload_weight</c>,
    /// <c>offload_state_dict</c>, <c>load_offloaded_weight</c>): <c>index.json</c> maps each name to
    /// <c>{"dtype": numpy dtype name, "shape": [...]}</c>, and the data are in <c>{name}.dat</c> (a raw
    /// <c>np.memmap</c>; bfloat16 is written as int16 with dtype <c>"bfloat16"</c>; a 0-dimensional tensor is
    /// stored with shape <c>[1]</c> and its index shape <c>[]</c>). Each <c>.dat</c> must be exactly the size its
    /// shape and dtype say.
    /// </summary>
    internal static class OffloadFolderFormat
    {
        internal static readonly Dictionary<string, torch.ScalarType> DTypes = new()
        {
            ["float64"] = torch.ScalarType.Float64, ["float32"] = torch.ScalarType.Float32, ["float16"] = torch.ScalarType.Float16,
            ["bfloat16"] = torch.ScalarType.BFloat16, ["int64"] = torch.ScalarType.Int64, ["int32"] = torch.ScalarType.Int32,
            ["int16"] = torch.ScalarType.Int16, ["int8"] = torch.ScalarType.Int8, ["uint8"] = torch.ScalarType.Byte,
            ["bool"] = torch.ScalarType.Bool,
        };

        public static List<StoredTensor> Read(string folder)
        {
            var full = Path.GetFullPath(folder);
            var index = Path.Combine(full, "index.json");
            if (!File.Exists(index)) throw new FileNotFoundException($"No offload-folder index at '{index}' (Accelerate's layout: index.json + one .dat per tensor).", index);
            var tensors = new List<StoredTensor>();
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
                foreach (var entry in doc.RootElement.EnumerateObject())
                {
                    string where = $"'{index}', tensor '{entry.Name}'";
                    if (entry.Name.Length == 0 || entry.Name.Contains('/') || entry.Name.Contains('\\') || entry.Name.Contains("..", StringComparison.Ordinal))
                        throw new CheckpointFormatException($"{where}: the name is not a plain file name; the folder is corrupt.");
                    var code = entry.Value.GetProperty("dtype").GetString() ?? "";
                    if (!DTypes.TryGetValue(code, out var dtype))
                        throw new CheckpointFormatException($"{where}: dtype '{code}' is not supported (supported: {string.Join(", ", DTypes.Keys)}).");
                    var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                    long bytes = StoredTensor.CheckedBytes(where, dtype, shape);
                    var dat = Path.Combine(full, entry.Name + ".dat");
                    if (!File.Exists(dat)) throw new CheckpointFormatException($"{where}: its data file '{dat}' is missing.");
                    long size = new FileInfo(dat).Length;
                    if (size != bytes) throw new CheckpointFormatException($"{where}: '{dat}' has {size} bytes, its dtype and shape need {bytes}; the file is truncated or corrupt.");
                    tensors.Add(new StoredTensor(entry.Name, dtype, shape, dat, 0, bytes));
                }
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new CheckpointFormatException($"'{index}': not an offload-folder index ({{name: {{\"dtype\": \"float32\", \"shape\": [..]}}}}): {e.Message}", e);
            }
            return tensors;
        }
    }
}
