using System;
using System.Diagnostics;
using System.Linq;
using TorchSharp;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--wrap-probe</c>: where the time of <c>WithHooks()</c> on suite 4's 201-module model goes (Stopwatch, the last 5
    /// of 30 fresh models): the <c>named_modules()</c> walk, creating the hook points, attaching the dispatchers
    /// to them (what arming a tree costs, once), the whole <c>WithHooks()</c> (attaches nothing), 201 bare TorchSharp <c>register_forward_pre_hook</c> calls (TorchSharp keys each hook by
    /// <c>Guid.NewGuid().ToString()</c>), 201 such Guid strings alone, and 201 bare hook points.
    /// </summary>
    internal static class WrapProbe
    {
        public static int Run()
        {
            if (Environment.GetEnvironmentVariable("TORCHHOOKS_PROBE_ONLY") is not null)
            {
                // WithHooks() alone for 10 s, for a profiler.
                var until = Stopwatch.StartNew();
                while (until.ElapsedMilliseconds < 10_000) { var m = Models.DeepModel(); m.WithHooks(); }
                return 0;
            }

            // Medians over 30 fresh models of the parts of WithHooks(): the tree (walk + hook points) and the whole call.
            var treeTimes = new System.Collections.Generic.List<double>();
            var disposedTimes = new System.Collections.Generic.List<double>();
            var wrapTimes = new System.Collections.Generic.List<double>();
            for (int round = 0; round < 30; round++)
            {
                var a = Models.DeepModel();
                var b = Models.DeepModel();
                GC.Collect(); GC.WaitForPendingFinalizers();
                var tc = Stopwatch.GetTimestamp();
                ModuleState.IsDisposed(a);
                disposedTimes.Add(Stopwatch.GetElapsedTime(tc).TotalMicroseconds / Models.DeepModelModules);
                var t0 = Stopwatch.GetTimestamp();
                _ = new ModuleTree(a);
                var t1 = Stopwatch.GetTimestamp();
                _ = b.WithHooks();
                var t2 = Stopwatch.GetTimestamp();
                treeTimes.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds / Models.DeepModelModules);
                wrapTimes.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds / Models.DeepModelModules);
            }
            treeTimes.Sort(); wrapTimes.Sort(); disposedTimes.Sort();
            Console.WriteLine($"per module (median of 30, after a full GC): disposed-model check {disposedTimes[15]:F2} us; ModuleTree {treeTimes[15]:F2} us; WithHooks {wrapTimes[15]:F2} us");

            for (int round = 0; round < 30; round++)
            {
                var m1 = Models.DeepModel();
                var sw = Stopwatch.StartNew();
                var list = m1.named_modules().ToList();
                var tNamed = sw.Elapsed.TotalMicroseconds; sw.Restart();
                foreach (var (_, m) in list) { var h = ((torch.nn.Module)m).GetType(); }
                var nodes = list.Select(e => Dispatchers.GetOrCreate(e.module, e.name)).ToList();
                var tInstall = sw.Elapsed.TotalMicroseconds; sw.Restart();
                lock (Dispatchers.Gate) foreach (var node in nodes) node?.AttachLocked();
                var tAttach = sw.Elapsed.TotalMicroseconds; sw.Restart();
                var m2 = Models.DeepModel();
                sw.Restart();
                var f = m2.WithHooks();
                var tWrap = sw.Elapsed.TotalMicroseconds; sw.Restart();
                var m3 = Models.DeepModel();
                var l3 = m3.named_modules().Select(p => p.module).ToList();
                sw.Restart();
                foreach (var m in l3) ((TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>)m).register_forward_pre_hook((mm, x) => x);
                var tReg = sw.Elapsed.TotalMicroseconds;
                sw.Restart();
                for (int i = 0; i < 201; i++) Guid.NewGuid().ToString();
                var tGuid = sw.Elapsed.TotalMicroseconds;
                var m4 = Models.DeepModel();
                var l4 = m4.named_modules().Select(p => p.module).ToList();
                sw.Restart();
                foreach (var m in l4) new SignatureNode<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>(m, "", "", static _ => { });
                var tPoint = sw.Elapsed.TotalMicroseconds;
                if (round >= 25) Console.WriteLine($"  201 Guid strings {tGuid:F0} us; 201 HookPoints {tPoint:F0} us");
                if (round >= 25) Console.WriteLine($"named_modules {tNamed:F0} us; create 201 hook points {tInstall:F0} us; attach the dispatchers to them (arming) {tAttach:F0} us; WithHooks {tWrap:F0} us; 201 TorchSharp pre-hook registrations {tReg:F0} us");
            }
            return 0;
        }
    }
}
