using System;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace TorchHooks.Benchmarks
{
    /// <summary>
    /// Entry point.
    ///
    ///   dotnet run -c Release --project benchmarks/TorchHooks.Benchmarks -- --write-docs
    ///       Runs every suite (rounds of short jobs, in-process; about 4–5 minutes on 2 cores), the out-of-process
    ///       cross-check and benchmarks/pytorch_hook_cost.py, then writes docs/benchmarks.md.
    ///   ... -- --print-docs [--suites Dispatch,HookCost] [--dry] [--no-crosscheck] [--no-python]
    ///       The same, printing the markdown instead of writing it (for trying a subset; --dry = 1 iteration).
    ///   ... -- --resnet-probe [rounds]
    ///       resnet18 and the Linear of suite 5a in float32, per-call autocast, one region, bf16 weights: medians of
    ///       alternating rounds in one process (ResNetProbe.cs).
    ///   ... -- --hook-probe [rounds]
    ///       Suite 1b/3b's cases by Stopwatch in alternating rounds, for trying a call-path change in seconds (HookProbe.cs).
    ///   ... -- --tracing-paired [--rounds N] [--no-python]
    ///       Suite 6, tracing: tracer, OpenTelemetry spans, activation cache and (in the same run, alternating rounds)
    ///       torch.profiler through benchmarks/pytorch_hook_cost.py --serve-profiler (TracingPaired.cs).
    ///   ... -- --backward-paired [--rounds N] [--no-python]
    ///       Suite 7, backward hooks: no hooks, a full backward hook, a backward pre-hook, a gradient hook per module,
    ///       forward and backward apart, alternating with benchmarks/pytorch_hook_cost.py --serve-backward (BackwardPaired.cs).
    ///   ... -- --tracing-probe
    ///       What each sub-step of recording a module call costs (TracingProbe.cs).
    ///   ... -- --checkpoint-bench [--rounds N] [--steps N] [--batch N] [--threads N] [--malloc-mmap]
    ///       Activation checkpointing: a 24-block residual MLP's training step, nothing / every block / √n segments
    ///       checkpointed, each in its own child process (peak RSS = VmHWM), plus the nothing-checkpointed call cost (CheckpointBench.cs).
    ///   ... -- --offload-probe [--rounds 2] [--groups 21] [--layers 24] [--width 2048] [--passes 5]
    ///       Suite 9, big models: resident vs disk offload (mapped, copied) with and without prefetch, and streaming
    ///       loads; one child process per configuration for its peak RSS, alternating rounds (OffloadProbe.cs).
    ///   ... -- --model-hook-probe [rounds]
    ///       Call-path hooks (ModelHook) unattached, attached-and-removed, attached; paired rounds (ModelHookBenchmarks.cs).
    ///   ... -- --filter '*Dispatch*'   (or any other BenchmarkDotNet command line)
    ///       Ad hoc: BenchmarkDotNet's own switcher, in-process by default.
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            if (args.Contains("--hook-probe"))
                return HookProbe.Run(args);
            if (args.Contains("--model-hook-probe"))
                return ModelHookProbe.Run(args);
            if (args.Contains("--wrap-probe"))
                return WrapProbe.Run();
            if (args.Contains("--backward-probe"))
                return BackwardProbe.Run(args);
            if (args.Contains("--resnet-probe"))
                return ResNetProbe.Run(args);
            if (args.Contains("--tracing-probe"))
                return TracingProbe.Run();
            if (args.Contains("--checkpoint-bench"))
                return CheckpointBench.Run(args);
            if (args.Contains("--tracing-paired"))
                return TracingPaired.Run(args);
            if (args.Contains("--backward-paired"))
                return BackwardPaired.Run(args);
            if (args.Contains("--offload-probe"))
                return OffloadProbe.Run(args);
            if (args.Contains("--write-docs") || args.Contains("--print-docs"))
                return DocsRun.Run(args);

            var config = ManualConfig.Create(DefaultConfig.Instance)
                .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).AsDefault());
            BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
            return 0;
        }
    }
}
