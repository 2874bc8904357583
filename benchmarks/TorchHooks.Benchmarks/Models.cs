using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using Sequential = TorchSharp.Modules.Sequential;

namespace TorchHooks.Benchmarks
{
    /// <summary>The models the suites run. Each builder returns a fresh, never-wrapped model.</summary>
    internal static class Models
    {
        /// <summary>Module calls per forward of <see cref="TinyMlp"/>: the Sequential plus its 8 children.</summary>
        public const int TinyMlpCalls = 9;

        /// <summary>Module calls per forward of <see cref="WideMlp"/>: the Sequential plus 4 Linear.</summary>
        public const int WideMlpCalls = 5;

        /// <summary>Module calls per forward of <see cref="ManagedChain"/>: the chain plus its 8 pass-through children.</summary>
        public const int ManagedChainCalls = 9;

        /// <summary>Modules of <see cref="DeepModel"/>, root included.</summary>
        public const int DeepModelModules = 1 + DeepBlocks * 10;
        private const int DeepBlocks = 20;

        /// <summary>
        /// Sequential(Linear(8,8), ReLU) ×4 — 9 module calls on a 1×8 input: the cost of a call is the
        /// managed/native dispatch, not arithmetic.
        /// </summary>
        public static Sequential TinyMlp()
        {
            torch.manual_seed(1);
            var layers = new List<Module<Tensor, Tensor>>();
            for (int i = 0; i < 4; i++) { layers.Add(Linear(8, 8)); layers.Add(ReLU()); }
            return Freeze(Sequential(layers.ToArray()));
        }

        /// <summary>Sequential(Linear(1024,1024) ×4) — run on a 64×1024 input it is compute-bound (0.54 GFLOP per forward).</summary>
        public static Sequential WideMlp()
        {
            torch.manual_seed(2);
            var layers = new List<Module<Tensor, Tensor>>();
            for (int i = 0; i < 4; i++) layers.Add(Linear(1024, 1024));
            return Freeze(Sequential(layers.ToArray()));
        }

        /// <summary>
        /// A 201-module tree: Sequential of 20 blocks, each Sequential(Linear(16,16), ReLU ×4 pairs, LayerNorm(16)).
        /// </summary>
        public static Sequential DeepModel()
        {
            var blocks = new List<Module<Tensor, Tensor>>();
            for (int b = 0; b < DeepBlocks; b++)
            {
                var layers = new List<Module<Tensor, Tensor>>();
                for (int i = 0; i < 4; i++) { layers.Add(Linear(16, 16)); layers.Add(ReLU()); }
                layers.Add(LayerNorm(16));
                blocks.Add(Sequential(layers.ToArray()));
            }
            return Sequential(blocks.ToArray());
        }

        /// <summary>
        /// A chain of 8 managed pass-through modules (9 module calls, no native work, no allocation): what is left
        /// to time is the call path itself, so nanosecond differences are resolved that the tiny MLP's native
        /// work would hide in its run-to-run variation.
        /// </summary>
        public static Chain ManagedChain() => new Chain(8);

        /// <summary>
        /// Parameters stop requiring grad, so forwards build no autograd graph: the cheapest possible baseline,
        /// against which any call-path overhead shows most.
        /// </summary>
        public static Sequential Freeze(Sequential model)
        {
            foreach (var p in model.parameters()) p.requires_grad = false;
            return model;
        }

        /// <summary>Counts the modules of a tree, root included, the way TorchHooks walks it.</summary>
        public static int CountModules(torch.nn.Module model)
        {
            int n = 1;
            foreach (var _ in model.named_modules()) n++;
            return n;
        }
    }

    /// <summary>A module whose forward returns its input: no native call, no allocation.</summary>
    public sealed class PassThrough : Module<Tensor, Tensor>
    {
        public PassThrough() : base(nameof(PassThrough)) { }
        public override Tensor forward(Tensor input) => input;
    }

    /// <summary>Calls its children in order through <c>call</c> (so their hooks run), without disposing anything.</summary>
    public sealed class Chain : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor>[] _children;

        public Chain(int length) : base(nameof(Chain))
        {
            _children = new Module<Tensor, Tensor>[length];
            for (int i = 0; i < length; i++)
            {
                _children[i] = new PassThrough();
                register_module(i.ToString(System.Globalization.CultureInfo.InvariantCulture), _children[i]);
            }
        }

        public override Tensor forward(Tensor input)
        {
            var x = input;
            foreach (var child in _children) x = child.call(x);
            return x;
        }
    }

    /// <summary>How many module calls one invocation of a benchmark makes (for "ns per module call").</summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class ModuleCallsAttribute : Attribute
    {
        public ModuleCallsAttribute(int calls) { Calls = calls; }
        public int Calls { get; }
    }

    /// <summary>Registered no-op hooks per module call in one invocation (for "ns per hook").</summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class HooksPerCallAttribute : Attribute
    {
        public HooksPerCallAttribute(string kind, int count) { Kind = kind; Count = count; }
        public string Kind { get; }
        public int Count { get; }
    }
}
