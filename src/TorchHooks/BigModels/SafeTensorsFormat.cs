using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Reads the headers of safetensors files (Hugging Face's format: an 8-byte little-endian header length N, N bytes
    /// of JSON <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}</c>, then the raw data,
    /// offsets relative to the end of the header) and of sharded checkpoints (<c>model.safetensors.index.json</c>:
    /// <c>{"metadata": {…}, "weight_map": {name: shard file}}</c>). Only headers are read here; data are mapped later.
    /// Checks as the safetensors library's <c>validate</c> does: the header fits in the file, known dtypes, each
    /// tensor's byte range matches its shape, ranges in order with no gap or overlap, and the last one ends where
    /// the file ends.
    /// </summary>
    internal static class SafeTensorsFormat
    {
        /// <summary>The safetensors library's limit on the header size (100 MB).</summary>
        private const long MaxHeader = 100_000_000;

        internal static readonly Dictionary<string, torch.ScalarType> DTypes = new()
        {
            ["F64"] = torch.ScalarType.Float64, ["F32"] = torch.ScalarType.Float32, ["F16"] = torch.ScalarType.Float16,
            ["BF16"] = torch.ScalarType.BFloat16, ["I64"] = torch.ScalarType.Int64, ["I32"] = torch.ScalarType.Int32,
            ["I16"] = torch.ScalarType.Int16, ["I8"] = torch.ScalarType.Int8, ["U8"] = torch.ScalarType.Byte,
            ["BOOL"] = torch.ScalarType.Bool, ["C64"] = torch.ScalarType.ComplexFloat32,
        };

        /// <summary>Reads one file's header: its tensors (in data order) and its <c>__metadata__</c>.</summary>
        public static (List<StoredTensor> Tensors, Dictionary<string, string> Metadata) ReadFile(string path)
        {
            var full = Path.GetFullPath(path);
            if (!File.Exists(full)) throw new FileNotFoundException($"No safetensors file at '{full}'.", full);
            using var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            long length = stream.Length;
            if (length < 8) throw new CheckpointFormatException($"'{full}' is {length} bytes: too short for a safetensors file (8-byte header length first); the file is truncated.");
            Span<byte> head = stackalloc byte[8];
            stream.ReadExactly(head);
            long n = BitConverter.ToInt64(head);   // little-endian on every platform TorchSharp runs on
            if (n <= 0 || n > MaxHeader) throw new CheckpointFormatException($"'{full}': the header length is {n} bytes (allowed 1..{MaxHeader}); this is not a safetensors file or it is corrupt.");
            if (8 + n > length) throw new CheckpointFormatException($"'{full}': the header says it is {n} bytes but the file has only {length - 8} after the length; the file is truncated.");
            var json = new byte[n];
            stream.ReadExactly(json);
            long dataStart = 8 + n, dataLength = length - dataStart;

            JsonDocument doc;
            try { doc = JsonDocument.Parse(json); }
            catch (JsonException e) { throw new CheckpointFormatException($"'{full}': the header is not valid JSON ({e.Message}); the file is corrupt.", e); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new CheckpointFormatException($"'{full}': the header is not a JSON object; the file is corrupt.");
                var tensors = new List<(StoredTensor T, long Begin, long End)>();
                var metadata = new Dictionary<string, string>();
                foreach (var entry in doc.RootElement.EnumerateObject())
                {
                    if (entry.Name == "__metadata__")
                    {
                        if (entry.Value.ValueKind == JsonValueKind.Object)
                            foreach (var m in entry.Value.EnumerateObject()) metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                        continue;
                    }
                    string where = $"'{full}', tensor '{entry.Name}'";
                    var (dtype, shape, begin, end) = Entry(entry.Value, where);
                    long bytes = StoredTensor.CheckedBytes(where, dtype, shape);
                    if (begin < 0 || end < begin || end > dataLength)
                        throw new CheckpointFormatException($"{where}: data_offsets [{begin}, {end}] fall outside the {dataLength} data bytes of the file; the header lies about its offsets or the file is truncated.");
                    if (end - begin != bytes)
                        throw new CheckpointFormatException($"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes but dtype {dtype} × shape [{string.Join(", ", shape)}] needs {bytes}; the header is corrupt.");
                    tensors.Add((new StoredTensor(entry.Name, dtype, shape, full, dataStart + begin, bytes), begin, end));
                }
                tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
                long expected = 0;
                foreach (var (t, begin, end) in tensors)
                {
                    if (begin != expected)
                        throw new CheckpointFormatException($"'{full}', tensor '{t.Name}': its data begin at {begin}, expected {expected} (the previous tensor's end): ranges overlap or leave a gap; the header lies about its offsets.");
                    expected = end;
                }
                if (expected != dataLength)
                    throw new CheckpointFormatException($"'{full}': the tensors' data end at byte {expected} of the data but the file has {dataLength} data bytes; the file is truncated, padded or corrupt.");
                return (tensors.Select(t => t.T).ToList(), metadata);
            }
        }

        private static (torch.ScalarType, long[], long, long) Entry(JsonElement e, string where)
        {
            try
            {
                var code = e.GetProperty("dtype").GetString() ?? "";
                if (!DTypes.TryGetValue(code, out var dtype))
                    throw new CheckpointFormatException($"{where}: dtype '{code}' is not supported (supported: {string.Join(", ", DTypes.Keys)}).");
                var shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                var offsets = e.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                if (offsets.Length != 2) throw new CheckpointFormatException($"{where}: data_offsets must be [begin, end], found {offsets.Length} numbers.");
                return (dtype, shape, offsets[0], offsets[1]);
            }
            catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new CheckpointFormatException($"{where}: the entry must be {{\"dtype\": \"F32\", \"shape\": [..], \"data_offsets\": [begin, end]}} ({ex.Message}); the header is corrupt.", ex);
            }
        }

        /// <summary>Reads a sharded checkpoint's index and every shard's header; every indexed tensor must be in its shard.</summary>
        public static (List<StoredTensor> Tensors, Dictionary<string, string> Metadata) ReadIndex(string indexPath)
        {
            var full = Path.GetFullPath(indexPath);
            if (!File.Exists(full)) throw new FileNotFoundException($"No sharded-checkpoint index at '{full}'.", full);
            var folder = Path.GetDirectoryName(full)!;
            Dictionary<string, string> weightMap;
            var metadata = new Dictionary<string, string>();
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(full));
                weightMap = doc.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
                if (doc.RootElement.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
                    foreach (var m in md.EnumerateObject()) metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new CheckpointFormatException($"'{full}': not a sharded-checkpoint index ({{\"weight_map\": {{name: shard file}}}}): {e.Message}", e);
            }

            var tensors = new List<StoredTensor>();
            foreach (var shard in weightMap.Values.Distinct())
            {
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new CheckpointFormatException($"'{full}': the weight map names the shard '{shard}', which is not a file name in the index's folder; shards must sit next to the index.");
                var (shardTensors, _) = ReadFile(Path.Combine(folder, shard));
                var names = new HashSet<string>(shardTensors.Select(t => t.Name));
                foreach (var (name, file) in weightMap)
                    if (file == shard && !names.Contains(name))
                        throw new CheckpointFormatException($"'{full}': the weight map puts '{name}' in '{shard}', which has no such tensor; the index and the shards disagree.");
                tensors.AddRange(shardTensors.Where(t => weightMap.TryGetValue(t.Name, out var f) && f == shard));
            }
            return (tensors, metadata);
        }
    }
}
