using System;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using BenchmarkDotNet.Attributes;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Runs every benchmark of a suite for a while before BenchmarkDotNet measures it, so the code under test
    /// (TorchSharp's <c>call</c>, TorchHooks' call path, the dispatcher lambdas, the benchmark bodies) has been
    /// promoted to optimized, profile-guided tier-1 code. Without this, tiered compilation promotes some of
    /// it in the middle of a measurement (seen here as a case switching from ~33 µs to ~20 µs per forward
    /// between two iterations), and cases measured before and after a promotion are not comparable.
    /// </summary>
    internal static class Prewarm
    {
        public static TimeSpan Run(Type type, TimeSpan perMethod, int maxInvocations)
        {
            var sw = Stopwatch.StartNew();
            var methods = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                .Where(m => m.GetCustomAttribute<BenchmarkAttribute>() != null).ToArray();
            var all = type.GetMethods(BindingFlags.Public | BindingFlags.Instance);
            foreach (var method in methods)
            {
                var instance = Activator.CreateInstance(type)!;
                Invoke(instance, Find<GlobalSetupAttribute>(all, method, a => a.Targets));
                var iterSetup = Find<IterationSetupAttribute>(all, method, a => a.Targets);
                var iterCleanup = Find<IterationCleanupAttribute>(all, method, a => a.Targets);
                var body = (Action)(() => method.Invoke(instance, null));   // reflection's invoker is emitted after a few calls
                var t = Stopwatch.StartNew();
                for (int i = 0; i < maxInvocations && t.Elapsed < perMethod; i++)
                {
                    Invoke(instance, iterSetup);
                    body();
                    Invoke(instance, iterCleanup);
                }
                Invoke(instance, Find<GlobalCleanupAttribute>(all, method, a => a.Targets));
            }
            return sw.Elapsed;
        }

        /// <summary>The setup/cleanup method for <paramref name="benchmark"/>: one that targets it, else an untargeted one.</summary>
        private static MethodInfo? Find<T>(MethodInfo[] all, MethodInfo benchmark, Func<T, string[]> targets) where T : Attribute
        {
            var candidates = all.Select(m => (m, a: m.GetCustomAttribute<T>())).Where(x => x.a != null).ToArray();
            return candidates.FirstOrDefault(x => targets(x.a!).Contains(benchmark.Name)).m
                   ?? candidates.FirstOrDefault(x => targets(x.a!).Length == 0).m;
        }

        private static void Invoke(object instance, MethodInfo? method) => method?.Invoke(instance, null);
    }
}
