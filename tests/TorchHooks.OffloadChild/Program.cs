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
//   write    <model.bin> <layers> <width>                          a seeded model, saved with Module.save
//   run      <model.bin> <layers> <width> <mode> <passes> <out>    mode: resident | offload | prefetch:<bytes>
//   load     <model.bin> <layers> <width> <how>                    how: stream (empty model + streaming load_state_dict)
//                                                                   | build (allocated model + TorchSharp's Module.load)
// "run" prints one line: mode, baseline VmRSS, VmHWM, peak above baseline (bytes), median seconds per pass, prefetch
// hits/waits; and writes the last pass's output bytes to <out> (bit-identity is checked by the caller).
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
    return 0;
}

if (mode == "load")
{
    using (var warm = nn.Linear(8, 8)) { }
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
OffloadHandle? offload = null;
WeightStore? store = null;
if (config == "resident")
{
    net = Model(layers, width);
    net.load(path);
}
else
{
    using (EmptyWeights.Scope()) net = Model(layers, width);
    store = WeightStore.Disk(Checkpoint.Open(path));
    long prefetch = config.StartsWith("prefetch:", StringComparison.Ordinal) ? long.Parse(config.Substring(9), CultureInfo.InvariantCulture) : 0;
    offload = net.WithHooks().Offload(store, new OffloadOptions { PrefetchBytes = prefetch });
}
var m = net.WithHooks();
var times = new double[passes];
Tensor? last = null;
using (no_grad())
    for (int i = 0; i < passes; i++)
    {
        var clock = Stopwatch.StartNew();
        last?.Dispose();
        last = m.call(x);
        times[i] = clock.Elapsed.TotalSeconds;
    }
long hwm = Status("VmHWM");
File.WriteAllBytes(output, last!.bytes.ToArray());
Array.Sort(times);
Console.WriteLine(string.Join(" ", config, baseline, hwm, hwm - baseline, times[passes / 2].ToString("R", CultureInfo.InvariantCulture),
                              offload?.PrefetchHits ?? 0, offload?.PrefetchWaits ?? 0));

store?.Dispose();
return 0;
