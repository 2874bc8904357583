using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;

namespace TorchHooks.Benchmarks
{
    /// <summary>How a goal came out in one run.</summary>
    internal enum GoalState { Met, Missed, Inconclusive }

    /// <summary>One row of docs/benchmarks.md's "Goals at a glance", as measured.</summary>
    internal sealed record GoalRow(string Id, string What, string Target, string Measured, GoalState State);

    /// <summary>
    /// One goal of docs/benchmarks.md: its suite (the benchmark class, or the paired runner) and the cases it reads, named
    /// by <c>nameof</c>, so renaming a case breaks the build, and a goal whose suite or case is not run fails
    /// <c>BenchmarkGoalsTests</c> in seconds instead of after a five-minute run.
    /// </summary>
    internal sealed record GoalSpec(string Id, Type Suite, string What, string Target, params string[] Cases)
    {
        /// <summary>The row for the table; <paramref name="target"/> and <paramref name="whatSuffix"/> for values known only in the run.</summary>
        public GoalRow Row(string measured, GoalState state, string? target = null, string whatSuffix = "")
            => new(Id, What + whatSuffix, target ?? Target, measured, state);

        public GoalRow Row(string measured, bool met, string? target = null, string whatSuffix = "")
            => Row(measured, met ? GoalState.Met : GoalState.Missed, target, whatSuffix);
    }

    /// <summary>Every goal of docs/benchmarks.md, as data. <see cref="Report"/> evaluates them; the test checks their suites and cases exist.</summary>
    internal static class Goals
    {
        // 1: tiny MLP
        public static readonly GoalSpec MlpTime = new("1", typeof(DispatchBenchmarks), "facade, no hooks, tiny MLP: time (direct)", "≤ 1.03×",
            nameof(DispatchBenchmarks.FacadeCall), nameof(DispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec MlpExtra = new("1", typeof(DispatchBenchmarks), "facade, no hooks, tiny MLP: extra time per module call (direct)", "≤ 30 ns",
            nameof(DispatchBenchmarks.FacadeCall), nameof(DispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec MlpAlloc = new("1", typeof(DispatchBenchmarks), "facade, no hooks, tiny MLP: extra allocation per forward", "0 B",
            nameof(DispatchBenchmarks.FacadeCall), nameof(DispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec MlpPredicted = new("1", typeof(ChainDispatchBenchmarks), "facade, no hooks, tiny MLP: time (predicted from 1b)", "≤ 1.03×",
            nameof(ChainDispatchBenchmarks.FacadeCall), nameof(ChainDispatchBenchmarks.WrappedModelCall));

        // 1b: the call path alone
        public static readonly GoalSpec ChainExtra = new("1b", typeof(ChainDispatchBenchmarks), "facade, no hooks, call path alone: extra time per module call", "≤ 30 ns",
            nameof(ChainDispatchBenchmarks.FacadeCall), nameof(ChainDispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec ChainAlloc = new("1b", typeof(ChainDispatchBenchmarks), "facade, no hooks, call path alone: extra allocation per forward", "0 B",
            nameof(ChainDispatchBenchmarks.FacadeCall), nameof(ChainDispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec WrappedOwnCall = new("1b", typeof(ChainDispatchBenchmarks), "wrapped model's own call, no hooks: extra per module call (nothing registered, nothing paid)", "≤ 2 ns",
            nameof(ChainDispatchBenchmarks.WrappedModelCall), nameof(ChainDispatchBenchmarks.TorchSharpCall));
        public static readonly GoalSpec Bracket = new("1b", typeof(ChainDispatchBenchmarks), "facade's bracket per forward, nothing registered (≤ one TorchSharp module call", "≤ one module call",
            nameof(ChainDispatchBenchmarks.FacadeCall), nameof(ChainDispatchBenchmarks.WrappedModelCall), nameof(ChainDispatchBenchmarks.TorchSharpCall));

        // 2: compute-bound
        public static readonly GoalSpec ComputeTime = new("2", typeof(ComputeBenchmarks), "facade, no hooks, compute-bound: time (direct)", "≤ 1.03×",
            nameof(ComputeBenchmarks.FacadeCall), nameof(ComputeBenchmarks.TorchSharpCall));
        public static readonly GoalSpec ComputePredicted = new("2", typeof(ChainDispatchBenchmarks), "facade, no hooks, compute-bound: time (predicted from 1b)", "≤ 1.03×",
            nameof(ChainDispatchBenchmarks.FacadeCall), nameof(ChainDispatchBenchmarks.WrappedModelCall));
        public static readonly GoalSpec ComputeAlloc = new("2", typeof(ComputeBenchmarks), "facade, no hooks, compute-bound: extra allocation per forward", "0 B",
            nameof(ComputeBenchmarks.FacadeCall), nameof(ComputeBenchmarks.TorchSharpCall));

        // 3, 3b: hook costs, per hook kind: (kind, its one-hook case, its eight-hook case)
        public static readonly (string Kind, string One, string Eight)[] HookKinds =
        {
            ("local pre", nameof(HookCostBenchmarks.Pre1), nameof(HookCostBenchmarks.Pre8)),
            ("local forward", nameof(HookCostBenchmarks.Post1), nameof(HookCostBenchmarks.Post8)),
            ("global pre", nameof(HookCostBenchmarks.GlobalPre1), nameof(HookCostBenchmarks.GlobalPre8)),
            ("global forward", nameof(HookCostBenchmarks.GlobalPost1), nameof(HookCostBenchmarks.GlobalPost8)),
        };

        public static readonly GoalSpec[] ChainFirstHook = HookKinds.Select(k => new GoalSpec("3b", typeof(ChainHookCostBenchmarks),
            $"{k.Kind} hook, call path alone: first hook per module call, over the armed tree", "≤ 20 ns", k.One, nameof(HookCostBenchmarks.ArmedNoHooks))).ToArray();
        public static readonly GoalSpec[] ChainPerHook = HookKinds.Select(k => new GoalSpec("3b", typeof(ChainHookCostBenchmarks),
            $"{k.Kind} hook, call path alone: per further hook per module call", "≤ 20 ns", k.One, k.Eight)).ToArray();
        public static readonly GoalSpec[] MlpPerHook = HookKinds.Select(k => new GoalSpec("3", typeof(MlpHookCostBenchmarks),
            $"{k.Kind} hook, tiny MLP: per further hook per module call", "≤ 20 ns", k.One, k.Eight)).ToArray();

        // 4: wrapping
        public static readonly GoalSpec WrapPerModule = new("4", typeof(WrapBenchmarks), "WithHooks() per module", "≤ 1 µs", nameof(WrapBenchmarks.WithHooks));

        // 5: autocast
        public static readonly GoalSpec AutocastOverRaw = new("5a", typeof(AmpForwardBenchmarks), "bf16 autocast over the raw bf16 GEMM", "≤ 1.05×",
            nameof(AmpForwardBenchmarks.Bf16Autocast), nameof(AmpForwardBenchmarks.Bf16Raw));
        public static readonly GoalSpec RegionPerCall = new("5d", typeof(ResNetBenchmarks), "bf16 region per call (facade) vs one region around the loop", "≤ 1.00×",
            nameof(ResNetBenchmarks.PerCallFacade), nameof(ResNetBenchmarks.OneRegion));
        public static readonly GoalSpec RegionVsFloat32 = new("5d", typeof(ResNetBenchmarks), "bf16 region per call (facade) vs float32, avx512_bf16", "≤ 1/1.15 = 0.87×",
            nameof(ResNetBenchmarks.PerCallFacade), nameof(ResNetBenchmarks.Float32));

        // 6: tracing (paired with torch.profiler; its cases are TracingPaired.CaseKeys)
        public static readonly GoalSpec Tracer = new("6", typeof(TracingPaired), "`ModuleTracer` (tensor details recorded), tiny MLP: extra per module call over untraced",
            $"≤ {TracingPaired.GoalNs:0} ns", TracingPaired.TracerCase, TracingPaired.OffCase);

        // 7: backward hooks (paired with PyTorch; its cases are BackwardPaired.CaseKeys)
        public static readonly GoalSpec BackwardFullHook = new("7", typeof(BackwardPaired), "one full backward hook per module, tiny MLP: extra per module call (forward + backward)",
            $"≤ {BackwardPaired.GoalRatio:0.0}× PyTorch's", BackwardPaired.FullCase, BackwardPaired.NoneCase);
        public static readonly GoalSpec BackwardAlloc = new("7", typeof(BackwardPaired), "one full backward hook per module, tiny MLP: managed allocation per module call",
            $"≤ {BackwardPaired.GoalBytes:0} B", BackwardPaired.FullCase, BackwardPaired.NoneCase);

        // 9: models bigger than memory (child processes; its cases are OffloadProbe.CaseKeys)
        public static readonly GoalSpec OffloadThroughput = new("9", typeof(OffloadProbe), "disk offload, no prefetch: throughput vs all resident (warm page cache, 2 cores)",
            $"≥ {OffloadProbe.GoalOffload:0.0}×", OffloadProbe.OffloadCase, OffloadProbe.ResidentCase);
        public static readonly GoalSpec PrefetchThroughput = new("9", typeof(OffloadProbe), "disk offload + prefetch: throughput vs all resident (warm page cache, 2 cores)",
            $"≥ {OffloadProbe.GoalPrefetch:0.0}×", OffloadProbe.PrefetchCase, OffloadProbe.ResidentCase);
        public static readonly GoalSpec OffloadPeak = new("9", typeof(OffloadProbe), "disk offload of a model 4× the budget, with and without prefetch: peak RSS above baseline",
            "≤ budget + activations, bit-identical", OffloadProbe.OffloadCase, OffloadProbe.PrefetchCase, OffloadProbe.ResidentCase);
        public static readonly GoalSpec StreamingLoadPeak = new("9", typeof(OffloadProbe), "streaming load of an S-byte checkpoint into an empty model: peak RSS above baseline",
            "≤ S + largest tensor", OffloadProbe.StreamCase, OffloadProbe.BuildCase);

        /// <summary>Every goal declared above (fields and arrays), in declaration order.</summary>
        public static IEnumerable<GoalSpec> All =>
            typeof(Goals).GetFields(BindingFlags.Public | BindingFlags.Static).SelectMany(f => f.GetValue(null) switch
            {
                GoalSpec g => new[] { g },
                GoalSpec[] gs => gs,
                _ => Array.Empty<GoalSpec>(),
            });

        /// <summary>The cases a suite runs: its <c>[Benchmark]</c> methods, or a paired runner's <c>CaseKeys</c>.</summary>
        public static IReadOnlyCollection<string> CasesOf(Type suite)
        {
            var methods = suite.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                .Where(m => m.GetCustomAttribute<BenchmarkDotNet.Attributes.BenchmarkAttribute>() != null).Select(m => m.Name).ToList();
            if (methods.Count > 0) return methods;
            return suite.GetProperty("CaseKeys", BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)?.GetValue(null) as IReadOnlyCollection<string>
                   ?? Array.Empty<string>();
        }

        /// <summary>The suites the docs command runs: BenchmarkDotNet classes and the paired runners.</summary>
        public static IEnumerable<Type> RunSuites => DocsRun.Suites.Select(s => s.Type).Concat(DocsRun.PairedSuites);
    }
}
