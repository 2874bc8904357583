using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--resnet-probe [rounds]</c>: TorchVision resnet18 (1×3×224×224, eval, no_grad, every core) and the Linear of
    /// suite 5a, each case timed as the median of 10 calls, the cases alternating in rounds in one process (so load
    /// changes hit every case alike). Prints the CPU flags that decide bf16 speed next to the figures.
    /// </summary>
    internal static class ResNetProbe
    {
        public static int Run(string[] args)
        {
            int rounds = args.SkipWhile(a => a != "--resnet-probe").Skip(1).Select(a => int.TryParse(a, out var r) ? r : 0).FirstOrDefault();
            if (rounds <= 0) rounds = 5;
            var threadsArg = args.SkipWhile(a => a != "--threads").Skip(1).FirstOrDefault();
            torch.set_num_threads(int.TryParse(threadsArg, out var th) && th > 0 ? th : Environment.ProcessorCount);
            var machine = Machine.Collect(DocsRun.FindRepoRoot());
            Console.WriteLine($"CPU: {machine.Cpu}; flags: {string.Join(" ", Machine.BfloatFlags.Where(machine.Flags.Contains))}; threads {torch.get_num_threads()}");

            torch.manual_seed(5);
            var net = torchvision.models.resnet18();
            net.eval();
            var facade = net.WithHooks();
            var netBf16 = torchvision.models.resnet18();
            netBf16.load_state_dict(net.state_dict());
            netBf16.eval();
            netBf16.to(ScalarType.BFloat16);
            var x = torch.randn(1, 3, 224, 224);
            var xBf16 = x.to(ScalarType.BFloat16);

            var lin = torch.nn.Linear(2048, 2048);
            var linFacade = lin.WithHooks();
            var linBf16 = torch.nn.Linear(2048, 2048);
            linBf16.to(ScalarType.BFloat16);
            var lx = torch.randn(512, 2048);
            var lxBf16 = lx.to(ScalarType.BFloat16);

            var cases = new (string Name, Action<int> Run)[]
            {
                ("resnet18 float32", n => { for (int i = 0; i < n; i++) Time(() => { using var y = net.call(x); }); }),
                ("resnet18 per-call autocast (raw module)", n => { for (int i = 0; i < n; i++) Time(() => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = net.call(x); } }); }),
                ("resnet18 per-call autocast (facade)", n => { for (int i = 0; i < n; i++) Time(() => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = facade.call(x); } }); }),
                ("resnet18 one region around the loop", n => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) for (int i = 0; i < n; i++) Time(() => { using var y = net.call(x); }); }),
                ("resnet18 bf16 weights, no autocast", n => { for (int i = 0; i < n; i++) Time(() => { using var y = netBf16.call(xBf16); }); }),
                ("linear float32", n => { for (int i = 0; i < n; i++) Time(() => { using var y = lin.call(lx); }); }),
                ("linear per-call autocast (raw module)", n => { for (int i = 0; i < n; i++) Time(() => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = lin.call(lx); } }); }),
                ("linear per-call autocast (facade)", n => { for (int i = 0; i < n; i++) Time(() => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) { using var y = linFacade.call(lx); } }); }),
                ("linear one region around the loop", n => { using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)) for (int i = 0; i < n; i++) Time(() => { using var y = lin.call(lx); }); }),
                ("linear bf16 weights and input (raw bf16 GEMM)", n => { for (int i = 0; i < n; i++) Time(() => { using var y = linBf16.call(lxBf16); }); }),
            };
            var medians = cases.Select(_ => new List<double>()).ToArray();
            var cpuMedians = cases.Select(_ => new List<double>()).ToArray();
            using (torch.no_grad())
            {
                foreach (var c in cases) c.Run(2); // warm up
                for (int r = 0; r < rounds; r++)
                {
                    Console.WriteLine($"round {r + 1}/{rounds}, load {Machine.LoadAverage()}");
                    for (int i = 0; i < cases.Length; i++)
                    {
                        s_samples.Clear();
                        s_cpuSamples.Clear();
                        cases[i].Run(10);
                        medians[i].Add(Median(s_samples));
                        cpuMedians[i].Add(Median(s_cpuSamples));
                    }
                }
            }
            Console.WriteLine($"load after: {Machine.LoadAverage()}");
            Console.WriteLine($"{"case",-50} {"wall ms",8} {"CPU ms",8}  rounds: wall ms (CPU ms)");
            for (int i = 0; i < cases.Length; i++)
                Console.WriteLine($"{cases[i].Name,-50} {Median(medians[i]),8:F2} {Median(cpuMedians[i]),8:F2}  {string.Join(" ", medians[i].Select((m, r) => $"{m:F1}({cpuMedians[i][r]:F1})"))}");
            return 0;
        }

        private static readonly List<double> s_samples = new();
        private static readonly List<double> s_cpuSamples = new();
        private static readonly Process s_self = Process.GetCurrentProcess();

        // Wall time, and the process's CPU time (all threads, user + system): on a loaded machine the CPU time a
        // call consumes moves much less than its wall time.
        private static void Time(Action a)
        {
            s_self.Refresh();
            var cpu0 = s_self.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            a();
            s_samples.Add(sw.Elapsed.TotalMilliseconds);
            s_self.Refresh();
            s_cpuSamples.Add((s_self.TotalProcessorTime - cpu0).TotalMilliseconds);
        }

        private static double Median(List<double> v)
        {
            var s = v.OrderBy(d => d).ToArray();
            return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        }
    }
}
