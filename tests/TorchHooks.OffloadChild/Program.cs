using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using TorchHooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

// One configuration of the offload memory measurement per process (peak RSS is per process):
//   write    <model.bin> <layers> <width>                          a seeded model, saved with Module.save and as an
//                                                                   Accelerate offload folder <model.bin>.offload
//   profile  <model.bin> <layers> <width> <rounds>                 where a materialisation's time goes (one tensor)
//   rechunk  <model.bin> <layers> <width> <bytes>                  rewrites the offload folder's files in writes of <bytes>
//   speed    <model.bin> <layers> <width> <prefetch bytes> <groups> throughput of every configuration, pass by pass in turn
//   run      <model.bin> <layers> <width> <mode> <passes> <out>    mode: resident | offload | offload-copy | prefetch:<bytes>
//                                                                   | prefetch-copy:<bytes> (offload modes read <model.bin>.offload)
//   load     <model.bin> <layers> <width> <how> [cold]             how: stream (empty model + streaming load_state_dict)
//                                                                   | build (allocated model + TorchSharp's Module.load);
//                                                                   cold: no warm-up load of a tiny model before the baseline
// "run" prints one line: mode, baseline VmRSS, VmHWM, peak above baseline (bytes), median seconds per pass, prefetch
// hits/waits/misses; and writes the last pass's output bytes to <out> (bit-identity is checked by the caller).
static long Status(string field)
{
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith(field + ":", StringComparison.Ordinal))
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    throw new InvalidOperationException($"no {field} in /proc/self/status");
}

static Sequential Model(int layers, int width)
    => nn.Sequential(Enumerable.Range(0, layers).Select(i => ($"layer{i}", (nn.Module<Tensor, Tensor>)nn.Linear(width, width))).ToArray());

var mode = args[0];
string path = args[1];
int layers = int.Parse(args[2], CultureInfo.InvariantCulture), width = int.Parse(args[3], CultureInfo.InvariantCulture);
if (mode == "write")
{
    manual_seed(42);
    using var scale = no_grad();
    var model = Model(layers, width);
    foreach (var p in model.parameters()) p.mul_(0.5);
    model.save(path);
    // The same weights in Accelerate's offload folder (one aligned .dat per tensor): what the offload runs read.
    using var sd = model.WithHooks().StateDict();
    OffloadFolder.Write(sd, path + ".offload");
    return 0;
}

if (mode == "rechunk")
{
    // Rewrites every file of <model.bin>.offload with writes of <bytes> each (the page cache keeps what a write wrote in
    // folios of about that size: see the profile's mapping rows and docs/offload.md).
    int chunk = int.Parse(args[4], CultureInfo.InvariantCulture);
    foreach (var file in Directory.GetFiles(path + ".offload", "*.dat"))
    {
        var data = File.ReadAllBytes(file);
        File.Delete(file);
        using var handle = File.OpenHandle(file, FileMode.CreateNew, FileAccess.Write);
        for (int at = 0; at < data.Length; at += chunk)
            RandomAccess.Write(handle, new ReadOnlySpan<byte>(data, at, Math.Min(chunk, data.Length - at)), at);
    }
    return 0;
}

if (mode == "load")
{
    // Warm the code this load runs (JIT, first-use structures, the reader) on a tiny model of the same kind, so the baseline
    // holds them as the "run" mode's warm-up does: measured, a cold process's first streaming load adds ~10 MB of code and
    // runtime structures on top of the tensors (see docs/offload.md).
    bool warmFirst = args.Length < 6 || args[5] != "cold";
    if (warmFirst)
    {
        string tiny = path + $".warm-{Environment.ProcessId}";
        try
        {
            using (var small = Model(2, 8)) small.save(tiny);
            Sequential w;
            if (args[4] == "stream")
            {
                using (EmptyWeights.Scope()) w = Model(2, 8);
                using var c = Checkpoint.Open(tiny);
                w.WithHooks().load_state_dict(c);
            }
            else
            {
                w = Model(2, 8);
                w.load(tiny);
            }
            w.Dispose();
        }
        finally { File.Delete(tiny); }
    }
    else using (var warm = nn.Linear(8, 8)) { }
    GC.Collect();
    long before = Status("VmRSS");
    var clock = Stopwatch.StartNew();
    Sequential loaded;
    if (args[4] == "stream")
    {
        using (EmptyWeights.Scope()) loaded = Model(layers, width);
        using var checkpoint = Checkpoint.Open(path);
        loaded.WithHooks().load_state_dict(checkpoint);
    }
    else
    {
        loaded = Model(layers, width);
        loaded.load(path);
    }
    double seconds = clock.Elapsed.TotalSeconds;
    long top = Status("VmHWM");
    Console.WriteLine(string.Join(" ", "load-" + args[4], before, top, top - before, seconds.ToString("R", CultureInfo.InvariantCulture), new FileInfo(path).Length, 0));
    GC.KeepAlive(loaded);
    return 0;
}

if (mode == "profile")
{
    // Where a materialisation's time goes, per tensor of the checkpoint (median over the passes, warm page cache), with
    // malloc's mmap threshold fixed at 1 MiB as OffloadOptions.ReturnFreedMemory does: a fresh torch.empty (first touch
    // page-faults), a copy from a memory mapping of the tensor's bytes (mapped per read), a pread into the same
    // (already faulted) buffer, a memcpy between two warm buffers (memory bandwidth), and the layer's compute.
    int rounds = int.Parse(args[4], CultureInfo.InvariantCulture);
    Native.Mallopt(-3, 1 << 20);
    using var checkpoint = Checkpoint.Open(path);
    var big = checkpoint.Tensors.OrderByDescending(t => t.ByteCount).First();
    var results = new System.Collections.Generic.Dictionary<string, System.Collections.Generic.List<double>>();
    void Time(string what, Action action, int per = 1)
    {
        var clock = Stopwatch.StartNew();
        action();
        if (!results.TryGetValue(what, out var list)) results[what] = list = new();
        list.Add(clock.Elapsed.TotalMilliseconds / per);
    }
    var residentLayers = Enumerable.Range(0, layers).Select(_ => nn.Linear(width, width)).ToList();
    using var file = File.OpenHandle(big.File, FileMode.Open, FileAccess.Read);
    using var map = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(big.File, FileMode.Open, null, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
    using var warmA = empty(big.ShapeArrayPublic(), big.dtype);
    using var warmB = empty(big.ShapeArrayPublic(), big.dtype);
    warmA.fill_(1); warmB.fill_(2);
    using var lin = nn.Linear(width, width);
    using var xin = ones(8, width);
    unsafe void MapCopy(Tensor into)
    {
        using var view = map.CreateViewAccessor(big.Offset, big.ByteCount, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
        byte* source = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref source);
        try { var d = into.bytes; fixed (byte* p = d) Buffer.MemoryCopy(source + view.PointerOffset, p, d.Length, d.Length); }
        finally { view.SafeMemoryMappedViewHandle.ReleasePointer(); }
    }
    void Pread(Tensor into)
    {
        var d = into.bytes;
        int n = RandomAccess.Read(file, d, big.Offset);
        if (n != d.Length) throw new InvalidOperationException("short read");
    }
    string raw = path + ".raw-" + big.Name;
    using (var t = checkpoint.Read(big.Name)) File.WriteAllBytes(raw, t.bytes.ToArray());
    using var holder = nn.Linear(width, width);
    for (int r = 0; r < rounds; r++)
    {
        Time("map (from_file) + Linear forward + unmap", () =>
        {
            using var _ = no_grad();
            using (var mapped = from_file(raw, false, big.Numel, big.dtype))
            using (var shaped = mapped.view(big.ShapeArrayPublic()))
                holder.weight!.set_(shaped);
            holder.call(xin).Dispose();
            using var none = empty(0);
            holder.weight!.set_(none);
        });
        Time($"per layer: map each of the {layers} layers' weights (offload folder) + forward + unmap", () =>
        {
            using var _ = no_grad();
            for (int l = 0; l < layers; l++)
            {
                using (var mapped = from_file(Path.Combine(path + ".offload", $"layer{l}.weight.dat"), false, big.Numel, big.dtype))
                using (var shaped = mapped.view(big.ShapeArrayPublic()))
                    holder.weight!.set_(shaped);
                holder.call(xin).Dispose();
                using var none = empty(0);
                holder.weight!.set_(none);
            }
        }, layers);
        Time($"per layer: map each layer + MADV_POPULATE_READ + forward + unmap", () =>
        {
            using var _ = no_grad();
            for (int l = 0; l < layers; l++)
            {
                using (var mapped = from_file(Path.Combine(path + ".offload", $"layer{l}.weight.dat"), false, big.Numel, big.dtype))
                {
                    Native.Populate(mapped);
                    using var shaped = mapped.view(big.ShapeArrayPublic());
                    holder.weight!.set_(shaped);
                }
                holder.call(xin).Dispose();
                using var none = empty(0);
                holder.weight!.set_(none);
            }
        }, layers);
        Time($"per layer: map each layer + MADV_POPULATE_READ + unmap (no forward)", () =>
        {
            for (int l = 0; l < layers; l++)
            {
                using var mapped = from_file(Path.Combine(path + ".offload", $"layer{l}.weight.dat"), false, big.Numel, big.dtype);
                Native.Populate(mapped);
            }
        }, layers);
        Time($"per layer: map each layer + read one byte per page + unmap (no forward)", () =>
        {
            for (int l = 0; l < layers; l++)
            {
                using var mapped = from_file(Path.Combine(path + ".offload", $"layer{l}.weight.dat"), false, big.Numel, big.dtype);
                Native.TouchPages(mapped);
            }
        }, layers);
        Time($"per layer: {layers} resident layers' forward", () =>
        {
            using var _ = no_grad();
            foreach (var l in residentLayers) l.call(xin).Dispose();
        }, layers);
        Time("map (from_file) + sum of every element + unmap", () =>
        {
            using var mapped = from_file(raw, false, big.Numel, big.dtype);
            using var sum = mapped.sum();
        });
        Time("empty + first touch (fill_)", () => { using var t = empty(big.ShapeArrayPublic(), big.dtype); t.fill_(0); });
        Time("empty + copy from a per-read mapping (the read before the pool)", () => { using var t = empty(big.ShapeArrayPublic(), big.dtype); MapCopy(t); });
        Time("copy from a per-read mapping into a warm buffer", () => MapCopy(warmA));
        Time("empty + pread", () => { using var t = empty(big.ShapeArrayPublic(), big.dtype); Pread(t); });
        Time("pread into a warm buffer", () => Pread(warmA));
        Time("copy_ between warm buffers", () => { using (no_grad()) warmA.copy_(warmB); });
        Time("Linear forward (batch 8)", () => { using (no_grad()) lin.call(xin).Dispose(); });
    }
    Console.WriteLine($"tensor {big.Name}: {big.ByteCount / 1e6:F1} MB; median ms over {rounds} rounds; torch threads {get_num_threads()}");
    foreach (var (what, list) in results)
    {
        list.Sort();
        Console.WriteLine($"{list[list.Count / 2],8:F2} ms  {list[0],8:F2} min  {what}");
    }
    File.Delete(raw);
    return 0;
}

if (mode == "speed")
{
    // Throughput only (no memory figures: every configuration lives in this one process): the resident model and one
    // offloaded copy per configuration, run pass by pass in turn — resident, mapped, mapped + prefetch, copied, copied +
    // prefetch — for <groups> groups after a warm-up group; each configuration's throughput relative to resident is taken
    // within a group (passes a fraction of a second apart, so a busy machine's slow phases hit all alike), median over
    // groups. Prints one line per configuration: key, median s/pass, median throughput vs resident, hits/waits/misses.
    long prefetchBytes = long.Parse(args[4], CultureInfo.InvariantCulture);
    int groups = int.Parse(args[5], CultureInfo.InvariantCulture);
    using var input = ones(8, width) * 0.01;
    var resident = Model(layers, width);
    resident.load(path);
    var configs = new System.Collections.Generic.List<(string Key, HookedModule<Tensor, Tensor> Model, OffloadHandle? Handle, WeightStore? Store)>
    {
        ("resident", resident.WithHooks(), null, null),
    };
    foreach (var (key, map, bytes) in new[] { ("offload", true, 0L), ("prefetch", true, prefetchBytes), ("offload-copy", false, 0L), ("prefetch-copy", false, prefetchBytes) })
    {
        Sequential empty;
        using (EmptyWeights.Scope()) empty = Model(layers, width);
        var disk = WeightStore.Disk(Checkpoint.Open(path + ".offload"));
        var facade = empty.WithHooks();
        configs.Add((key, facade, facade.Offload(disk, new OffloadOptions { PrefetchBytes = bytes, MapWeights = map }), disk));
    }
    var seconds = configs.ToDictionary(c => c.Key, _ => new System.Collections.Generic.List<double>());
    using (no_grad())
    {
        byte[]? want = null;
        for (int g = -1; g < groups; g++)
            foreach (var (key, model, _, _) in configs)
            {
                var clock = Stopwatch.StartNew();
                using var y = model.call(input);
                double t = clock.Elapsed.TotalSeconds;
                if (g < 0)
                {
                    var bytes = y.bytes.ToArray();
                    if (want is null) want = bytes;
                    else if (!bytes.AsSpan().SequenceEqual(want)) throw new InvalidOperationException($"{key}: output differs from resident");
                    continue;
                }
                seconds[key].Add(t);
            }
    }
    static double Median(System.Collections.Generic.IEnumerable<double> v) { var a = v.OrderBy(x => x).ToArray(); return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2; }
    foreach (var (key, _, handle, _) in configs)
    {
        var ratio = Median(Enumerable.Range(0, groups).Select(i => seconds["resident"][i] / seconds[key][i]));
        Console.WriteLine(string.Join(" ", "speed", key, Median(seconds[key]).ToString("R", CultureInfo.InvariantCulture), ratio.ToString("R", CultureInfo.InvariantCulture),
                                      handle?.PrefetchHits ?? 0, handle?.PrefetchWaits ?? 0, handle?.PrefetchMisses ?? 0));
    }
    foreach (var (_, _, handle, disk) in configs) { handle?.Dispose(); disk?.Dispose(); }
    return 0;
}

string config = args[4];
int passes = int.Parse(args[5], CultureInfo.InvariantCulture);
string output = args[6];
using var x = ones(8, width) * 0.01;
{
    // Warm the kernels this run uses (a Linear of the same width) so their code pages are in the baseline.
    using var warm = nn.Linear(width, width);
    using var _ = no_grad();
    using var y = warm.call(x);
}
{
    // Warm the managed call path, offload included, on a tiny model, so JIT and first-use structures are in the baseline.
    using var tiny = nn.Sequential(("a", nn.Linear(8, 8)), ("b", nn.Linear(8, 8)));
    var t = tiny.WithHooks();
    using var host = WeightStore.Host(t.StateDict());
    using var warmOffload = t.Offload(host, new OffloadOptions { PrefetchBytes = 1024 });
    using var input = ones(2, 8);
    using var _ = no_grad();
    for (int i = 0; i < 3; i++) t.call(input).Dispose();
}
GC.Collect();
long baseline = Status("VmRSS");

Sequential net;
bool cold = false;
OffloadHandle? offload = null;
WeightStore? store = null;
if (config == "resident")
{
    net = Model(layers, width);
    net.load(path);
}
else
{
    // offload | offload-copy | prefetch:<bytes> | prefetch-copy:<bytes>: "-copy" reads into pooled buffers instead of mapping;
    // "-cold" anywhere (offload-cold, prefetch-cold:<bytes>): the files are dropped from the page cache before every pass.
    using (EmptyWeights.Scope()) net = Model(layers, width);
    store = WeightStore.Disk(Checkpoint.Open(path + ".offload"));
    bool copy = config.Contains("-copy", StringComparison.Ordinal);
    cold = config.Contains("-cold", StringComparison.Ordinal);
    long prefetch = config.StartsWith("prefetch", StringComparison.Ordinal) ? long.Parse(config.Substring(config.IndexOf(':') + 1), CultureInfo.InvariantCulture) : 0;
    offload = net.WithHooks().Offload(store, new OffloadOptions { PrefetchBytes = prefetch, MapWeights = !copy });
}
var m = net.WithHooks();
var times = new double[passes];
Tensor? last = null;
using (no_grad())
    for (int i = 0; i < passes; i++)
    {
        if (cold) Native.DropFromPageCache(path + ".offload");   // every pass reads the weights from the disk
        var clock = Stopwatch.StartNew();
        last?.Dispose();
        last = m.call(x);
        times[i] = clock.Elapsed.TotalSeconds;
    }
long hwm = Status("VmHWM");
File.WriteAllBytes(output, last!.bytes.ToArray());
Array.Sort(times);
Console.WriteLine(string.Join(" ", config, baseline, hwm, hwm - baseline, times[passes / 2].ToString("R", CultureInfo.InvariantCulture),
                              offload?.PrefetchHits ?? 0, offload?.PrefetchWaits ?? 0, offload?.PrefetchMisses ?? 0));

store?.Dispose();
return 0;

internal static class Native
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
    public static extern int Mallopt(int param, int value);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern unsafe int Madvise(void* address, nuint length, int advice);

    /// <summary>MADV_POPULATE_READ (Linux 5.14+) over a mapped tensor's pages: its page-table entries filled in one call.</summary>
    public static unsafe void Populate(Tensor mapped)
    {
        const int MADV_POPULATE_READ = 22;
        var span = mapped.bytes;
        fixed (byte* p = span)
        {
            long start = (long)p & ~4095L;
            long end = (long)p + span.Length;
            if (Madvise((void*)start, (nuint)(end - start), MADV_POPULATE_READ) != 0)
                throw new InvalidOperationException($"madvise failed: {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
    }

    public static unsafe void TouchPages(Tensor mapped)
    {
        var span = mapped.bytes;
        int sum = 0;
        fixed (byte* p = span)
            for (int at = 0; at < span.Length; at += 4096) sum += System.Threading.Volatile.Read(ref p[at]);
        GC.KeepAlive(sum);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(int fd, long offset, long length, int advice);

    /// <summary>Asks the kernel to drop the folder's files from the page cache (POSIX_FADV_DONTNEED: clean, unmapped pages go; no root needed).</summary>
    public static void DropFromPageCache(string folder)
    {
        const int POSIX_FADV_DONTNEED = 4;
        foreach (var file in Directory.GetFiles(folder))
        {
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read);
            int rc = PosixFadvise((int)handle.DangerousGetHandle(), 0, 0, POSIX_FADV_DONTNEED);
            if (rc != 0) throw new InvalidOperationException($"posix_fadvise({file}) failed: {rc}");
        }
    }
}

internal static class StoredTensorShape
{
    public static long[] ShapeArrayPublic(this StoredTensor t) => t.shape.ToArray();
}
