using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A checkpoint on disk, opened for streaming: its headers are read and checked when it is opened (no tensor
    /// data are read), and each tensor is later read on its own with positioned reads (<c>pread</c>) straight into its
    /// destination — so loading a model costs what stays resident, not a second copy of the model (nothing is mapped:
    /// the bytes come from the page cache in one copy; an offload maps aligned tensors instead,
    /// <see cref="OffloadOptions.MapWeights"/>). Formats: safetensors (one file, or Hugging Face's sharded
    /// <c>model.safetensors.index.json</c>), TorchSharp's own <c>Module.save</c> files, and Accelerate's offload
    /// folder (<c>index.json</c> + one <c>.dat</c> per tensor).
    /// </summary>
    /// <remarks>
    /// <para>Data are read as little-endian (the formats' byte order; every platform TorchSharp runs on).</para>
    /// <para>Dispose the checkpoint to close its files. While it is open, its files must not be truncated by another
    /// process: each read checks the file length first, and a read that comes up short throws.</para>
    /// </remarks>
    public sealed class Checkpoint : IDisposable
    {
        private readonly Dictionary<string, StoredTensor> _byName;
        private readonly Dictionary<string, SafeFileHandle> _files = new();
        private readonly Dictionary<string, long> _lengths;
        private bool _disposed;

        private Checkpoint(string path, string format, List<StoredTensor> tensors, Dictionary<string, string>? metadata)
        {
            Path = path; Format = format; Tensors = tensors; Metadata = metadata ?? new Dictionary<string, string>();
            _byName = new Dictionary<string, StoredTensor>(StringComparer.Ordinal);
            foreach (var t in tensors)
                if (!_byName.TryAdd(t.Name, t)) throw new CheckpointFormatException($"'{path}': the tensor '{t.Name}' appears twice; the checkpoint is corrupt.");
            _lengths = tensors.Select(t => t.File).Distinct().ToDictionary(f => f, f => new FileInfo(f).Length);
        }

        /// <summary>The path the checkpoint was opened from.</summary>
        public string Path { get; }
        /// <summary><c>safetensors</c>, <c>safetensors-sharded</c>, <c>torchsharp</c> or <c>offload-folder</c>.</summary>
        public string Format { get; }
        /// <summary>The tensors, in the files' data order.</summary>
        public IReadOnlyList<StoredTensor> Tensors { get; }
        /// <summary>safetensors' <c>__metadata__</c> (or a sharded index's <c>metadata</c>); empty for other formats.</summary>
        public IReadOnlyDictionary<string, string> Metadata { get; }
        /// <summary>The tensor names.</summary>
        public IEnumerable<string> Keys => Tensors.Select(t => t.Name);
        /// <summary>The total bytes of the tensors' data.</summary>
        public long TotalBytes => Tensors.Sum(t => t.ByteCount);

        /// <summary>Whether the checkpoint has a tensor named <paramref name="name"/>.</summary>
        public bool Contains(string name) => _byName.ContainsKey(name);

        /// <summary>The stored tensor named <paramref name="name"/>.</summary>
        /// <exception cref="KeyNotFoundException">No such tensor; the message names a few that exist.</exception>
        public StoredTensor this[string name] => _byName.TryGetValue(name, out var t) ? t
            : throw new KeyNotFoundException($"The checkpoint '{Path}' has no tensor '{name}'. It has {Tensors.Count}, e.g. {string.Join(", ", Tensors.Take(5).Select(x => "'" + x.Name + "'"))}.");

        /// <summary>
        /// Opens a checkpoint, choosing the format from the path: a <c>.safetensors</c> file; a <c>*.index.json</c>
        /// (sharded safetensors); a folder holding <c>model.safetensors.index.json</c>, <c>model.safetensors</c> or an
        /// offload folder's <c>index.json</c>; any other file is read as TorchSharp's <c>Module.save</c> format.
        /// </summary>
        /// <exception cref="FileNotFoundException">Nothing at <paramref name="path"/>.</exception>
        /// <exception cref="CheckpointFormatException">The file is truncated, corrupt or lies about its offsets.</exception>
        public static Checkpoint Open(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("Pass a checkpoint file or folder path.", nameof(path));
            var full = System.IO.Path.GetFullPath(path);
            if (Directory.Exists(full))
            {
                foreach (var name in new[] { "model.safetensors.index.json", "model.safetensors" })
                    if (File.Exists(System.IO.Path.Combine(full, name))) return SafeTensors(System.IO.Path.Combine(full, name));
                if (File.Exists(System.IO.Path.Combine(full, "index.json"))) return OffloadFolder(full);
                throw new FileNotFoundException($"The folder '{full}' has no model.safetensors.index.json, model.safetensors or index.json (an offload folder); pass the checkpoint file itself.");
            }
            if (!File.Exists(full)) throw new FileNotFoundException($"No checkpoint at '{full}'.", full);
            if (full.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || full.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
                return SafeTensors(full);
            return TorchSharp(full);
        }

        /// <summary>Opens a safetensors file, or a sharded checkpoint from its <c>*.index.json</c>.</summary>
        public static Checkpoint SafeTensors(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("Pass a .safetensors file or a model.safetensors.index.json.", nameof(path));
            var full = System.IO.Path.GetFullPath(path);
            if (full.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            {
                var (tensors, metadata) = SafeTensorsFormat.ReadIndex(full);
                return new Checkpoint(full, "safetensors-sharded", tensors, metadata);
            }
            var (single, meta) = SafeTensorsFormat.ReadFile(full);
            return new Checkpoint(full, "safetensors", single, meta);
        }

        /// <summary>Opens a file written by TorchSharp's <c>Module.save</c>.</summary>
        public static Checkpoint TorchSharp(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("Pass a file written by Module.save.", nameof(path));
            var full = System.IO.Path.GetFullPath(path);
            return new Checkpoint(full, "torchsharp", TorchSharpFormat.Read(full), null);
        }

        /// <summary>Opens Accelerate's offload folder (<c>index.json</c> + one <c>{name}.dat</c> per tensor).</summary>
        public static Checkpoint OffloadFolder(string folder)
        {
            if (string.IsNullOrEmpty(folder)) throw new ArgumentException("Pass an offload folder (index.json + .dat files).", nameof(folder));
            var full = System.IO.Path.GetFullPath(folder);
            return new Checkpoint(full, "offload-folder", OffloadFolderFormat.Read(full), null);
        }

        /// <summary>Reads the tensor named <paramref name="name"/> into a new CPU tensor (the caller disposes it).</summary>
        public Tensor Read(string name)
        {
            var t = this[name];
            var result = torch.empty(t.ShapeArray, t.dtype, torch.CPU);
            try { ReadInto(t, result); }
            catch { result.Dispose(); throw; }
            return result;
        }

        /// <summary>
        /// Copies <paramref name="stored"/>'s bytes into <paramref name="destination"/>: a contiguous CPU tensor of the
        /// same dtype and element count. Reads with positioned reads (<c>pread</c>) on the file's handle, straight into the
        /// destination's storage: one copy, from the page cache, and nothing mapped (a mapping's pages would count in the
        /// process's RSS while mapped, and a file truncated under it would fault; a short read here throws).
        /// </summary>
        internal unsafe void ReadInto(StoredTensor stored, Tensor destination)
        {
            if (destination.device_type != DeviceType.CPU || !destination.is_contiguous() || destination.dtype != stored.dtype || destination.numel() != stored.Numel)
                throw new ArgumentException($"Reading '{stored.Name}' needs a contiguous CPU {stored.dtype} tensor of {stored.Numel} elements; got {destination.device} {destination.dtype} of {destination.numel()}.", nameof(destination));
            if (stored.ByteCount == 0) return;
            var file = HandleOf(stored);
            using var flat = destination.view(-1);
            long element = StoredTensor.ElementSize(stored.dtype, stored.Name);
            long perChunk = (1L << 30) / element;
            long numel = flat.numel();
            for (long start = 0; start < numel; start += perChunk)
            {
                long n = Math.Min(perChunk, numel - start);
                using var part = flat.narrow(0, start, n);
                var span = part.bytes;
                long at = stored.Offset + start * element;
                for (int done = 0; done < span.Length; )
                {
                    int read = RandomAccess.Read(file, span.Slice(done), at + done);
                    if (read <= 0)
                        throw new CheckpointFormatException($"'{stored.File}' ended at byte {at + done} while reading '{stored.Name}' ({stored.ByteCount} bytes at {stored.Offset}): the file was truncated after it was opened; open it again.");
                    done += read;
                }
            }
        }

        /// <summary>Whether <see cref="Map"/> can map <paramref name="stored"/>: it has data, and its offset in the file is a multiple of its element size.</summary>
        internal static bool CanMap(StoredTensor stored)
            => stored.ByteCount > 0 && stored.Offset % StoredTensor.ElementSize(stored.dtype, stored.Name) == 0;

        /// <summary>
        /// <paramref name="stored"/> as a tensor over a private, read-only-in-practice memory mapping of its file (libtorch's
        /// <c>from_file</c>, <c>MAP_PRIVATE</c>): no copy; its pages are the page cache's, faulted in when first touched,
        /// counted in the process's RSS (as file pages) while mapped and touched, and unmapped when the last tensor using
        /// the mapping is freed (libtorch's storage reference count: a view kept elsewhere keeps the mapping valid). A write
        /// into it copies the page (the file never changes). Only if <see cref="CanMap"/>.
        /// </summary>
        internal Tensor Map(StoredTensor stored)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(Checkpoint), $"The checkpoint '{Path}' was disposed; open it again.");
            if (!CanMap(stored)) throw new ArgumentException($"'{stored.Name}' cannot be mapped (offset {stored.Offset} is not a multiple of its element size, or it has no data); read it.", nameof(stored));
            CheckUnchanged(stored);
            long element = StoredTensor.ElementSize(stored.dtype, stored.Name);
            long first = stored.Offset / element;
            // Maps the file from its start to the tensor's end (address space only; untouched pages cost nothing).
            using var whole = torch.from_file(stored.File, false, first + stored.Numel, stored.dtype);
            using var part = whole.narrow(0, first, stored.Numel);
            return part.view(stored.ShapeArray);
        }

        /// <summary>Starts reading <paramref name="stored"/>'s bytes into the page cache in the background (<see cref="PageCache.WillNeed"/>; a read ahead's first step).</summary>
        internal void WillNeed(StoredTensor stored)
        {
            if (stored.ByteCount == 0) return;
            PageCache.WillNeed(HandleOf(stored), stored.Offset, stored.ByteCount);
        }

        /// <summary>Throws if <paramref name="stored"/>'s file changed size since the checkpoint was opened; returns its size.</summary>
        internal long CheckUnchanged(StoredTensor stored)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(Checkpoint), $"The checkpoint '{Path}' was disposed; open it again.");
            long expected = _lengths[stored.File];
            long now = File.Exists(stored.File) ? new FileInfo(stored.File).Length : -1;
            if (now != expected)
                throw new CheckpointFormatException($"'{stored.File}' changed since the checkpoint was opened ({expected} bytes then, {now} now); open it again.");
            return expected;
        }

        private SafeFileHandle HandleOf(StoredTensor stored)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(Checkpoint), $"The checkpoint '{Path}' was disposed; open it again.");
            lock (_files)
            {
                CheckUnchanged(stored);
                if (_files.TryGetValue(stored.File, out var handle)) return handle;
                handle = File.OpenHandle(stored.File, FileMode.Open, FileAccess.Read, FileShare.Read);
                _files[stored.File] = handle;
                return handle;
            }
        }

        /// <summary>Closes the checkpoint's files.</summary>
        public void Dispose()
        {
            lock (_files)
            {
                _disposed = true;
                foreach (var handle in _files.Values) handle.Dispose();
                _files.Clear();
            }
        }

        /// <inheritdoc />
        public override string ToString() => $"Checkpoint({Format}, '{Path}', {Tensors.Count} tensors, {TotalBytes} bytes)";
    }
}
