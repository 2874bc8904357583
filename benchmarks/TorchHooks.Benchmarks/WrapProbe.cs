using System;
using System.Diagnostics;
using System.Linq;
using TorchSharp;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// <c>--wrap-probe</c>: where the time of <c>WithHooks()</c> on suite 4's 201-module model goes (Stopwatch, the last 5
    /// of 30 fresh models): the <c>named_modules()</c> walk, installing the dispatchers on every module, the whole
    /// <c>WithHooks()</c>, 201 bare TorchSharp <c>register_forward_pre_hook</c> calls (TorchSharp keys each hook by
    /// <c>Guid.NewGuid().ToString()</c>), 201 such Guid strings alone, and 201 bare hook points.
    /// </summary>
    internal static class WrapProbe
    {
        public static int Run()
        {

            for (int round = 0; round < 30; round++)
            {
                var m1 = Models.DeepModel();
                var sw = Stopwatch.StartNew();
                var list = m1.named_modules().ToList();
                var tNamed = sw.Elapsed.TotalMicroseconds; sw.Restart();
                foreach (var (_, m) in list) { var h = ((torch.nn.Module)m).GetType(); }
                foreach (var (n, m) in list)
                    Dispatchers.GetOrInstall(m, n);
                var tInstall = sw.Elapsed.TotalMicroseconds; sw.Restart();
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
                foreach (var m in l4) new HookPointOf<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>(m, "", "");
                var tPoint = sw.Elapsed.TotalMicroseconds;
                if (round >= 25) Console.WriteLine($"  201 Guid strings {tGuid:F0} us; 201 HookPoints {tPoint:F0} us");
                // The part issue 12 changed, A/B in one process: binding the installer by reflection per module
                // (MakeGenericMethod + Invoke, as before) vs the delegate cached per module type (Dispatchers now).
                var types = l4.Select(m => Dispatchers.FindModuleBase(m.GetType())).Where(t => t is not null).ToList();
                var install1 = typeof(Dispatchers).GetMethod("Install1", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
                sw.Restart();
                foreach (var t in types) install1.MakeGenericMethod(t!.GetGenericArguments());
                var tBind = sw.Elapsed.TotalMicroseconds;
                if (round >= 25) Console.WriteLine($"  201 MakeGenericMethod (the per-module reflection the cached delegate removes) {tBind:F0} us");
                if (round >= 25) Console.WriteLine($"named_modules {tNamed:F0} us; install 201 {tInstall:F0} us; WithHooks {tWrap:F0} us; 201 TorchSharp pre-hook registrations {tReg:F0} us");
            }
            return 0;
        }
    }
}
