using System.Threading.Tasks;
using NUnit.Framework;
using TorchHooks.Analyzers;
using static TorchHooks.Tests.Analyzers.AnalyzerTestSupport;

namespace TorchHooks.Tests.Analyzers
{
    /// <summary>TH0002 (a hook stores the tensor it was given), against the real TorchSharp and TorchHooks API.</summary>
    [TestFixture]
    public class HookTensorEscapeAnalyzerTests
    {
        private const string Usings = @"
using System;
using System.Collections.Generic;
using System.Collections.Concurrent;
using TorchSharp;
using TorchHooks;
using static TorchSharp.torch;
";

        private static Task Verify(string body) => AnalyzerTest<HookTensorEscapeAnalyzer>(Usings + body).RunAsync();

        [Test]
        public Task StoringInCollectionsIndexersAndTuplesIsFlagged() => Verify(@"
static class Program
{
    static void Run(HookedModule<Tensor, Tensor> m)
    {
        var list = new List<Tensor>();
        var named = new List<(string, Tensor)>();
        var dict = new Dictionary<string, Tensor>();
        var queue = new ConcurrentQueue<Tensor>();
        m[""0""].register_forward_hook((mod, x, y) => { list.Add({|TH0002:y|}); return null; });
        m[""0""].register_forward_hook((mod, x, y) => { named.Add((mod.GetName(), {|TH0002:y|})); return null; });
        m[""0""].register_forward_hook((mod, x, y) => { dict[mod.GetName()] = {|TH0002:y|}; return null; });
        m[""0""].register_forward_pre_hook((mod, x) => { queue.Enqueue({|TH0002:x|}); return null; });
        m.register_forward_hook((mod, x, y) => { list.Insert(0, {|TH0002:x|}); return null; });
    }
}");

        [Test]
        public Task StoringInFieldsCapturedLocalsAndArraysIsFlagged() => Verify(@"
class Probe
{
    private Tensor? last;
    public Tensor? Last { get; set; }
    public void Attach(HookedModule<Tensor, Tensor> m)
    {
        Tensor? captured = null;
        var slots = new Tensor[1];
        m[""0""].register_forward_hook((mod, x, y) => { last = {|TH0002:y|}; return null; });
        m[""0""].register_forward_hook((mod, x, y) => { Last = {|TH0002:y|}; return null; });
        m[""0""].register_forward_hook((mod, x, y) => { captured = {|TH0002:y|}; return null; });
        m[""0""].register_forward_hook((mod, x, y) => { slots[0] = {|TH0002:y|}; return null; });
    }
}");

        [Test]
        public Task GlobalTypedAndTorchSharpHooksAreChecked() => Verify(@"
static class Program
{
    static void Run(HookedModule<Tensor, Tensor> m, TorchSharp.Modules.Linear lin)
    {
        var kept = new List<Tensor>();
        using var g = ModuleHooks.register_module_forward_hook((mod, x, y) => { kept.Add({|TH0002:y|}); return null; });
        m[""0""].register_forward_hook<Tensor, Tensor, Tensor>((mod, a, b, y) => { kept.Add({|TH0002:b|}); return null; });
        lin.register_forward_hook((mod, x, y) => { kept.Add({|TH0002:y|}); return y; });
    }
}");

        [Test, Description("Issue 20 item 9: the Grad-CAM idiom grads.Add(grad_output[0]!) in a full backward hook, backward pre-hooks, global backward hooks and WithGradHook")]
        public Task BackwardHooksAndGradHooksAreChecked() => Verify(@"
static class Program
{
    static IReadOnlyList<Tensor?>? keptList;
    static void Run(HookedModule<Tensor, Tensor> m, Tensor x)
    {
        var grads = new List<Tensor>();
        var named = new Dictionary<string, Tensor>();
        m[""0""].register_full_backward_hook((mod, grad_input, grad_output) => { grads.Add({|TH0002:grad_output[0]|}!); return null; });
        m[""0""].register_full_backward_hook((mod, grad_input, grad_output) => { named[""in""] = {|TH0002:grad_input[0]|}!; return null; });
        m[""0""].register_full_backward_pre_hook((mod, grad_output) => { keptList = {|TH0002:grad_output|}; return null; });
        m.register_full_backward_hook((mod, gi, go) => { grads.AddRange({|TH0002:go|}!); return null; });
        using var g = ModuleHooks.register_module_full_backward_hook((mod, gi, go) => { grads.Add({|TH0002:go[0]|}!); return null; });
        using var y = x.WithGradHook(grad => { grads.Add({|TH0002:grad|}); return null; });
    }
}");

        [Test]
        public Task BackwardHooksKeepingTheirOwnCopiesAreNotFlagged() => Verify(@"
static class Program
{
    static void Run(HookedModule<Tensor, Tensor> m)
    {
        var grads = new List<Tensor>();
        var norms = new List<float>();
        m[""0""].register_full_backward_hook((mod, grad_input, grad_output) =>
        {
            grads.Add(grad_output[0]!.detach().clone().DetachFromDisposeScope());   // its own copy
            norms.Add(grad_output[0]!.norm().item<float>());                       // not the tensor
            var count = grad_output.Count;
            return null;
        });
    }
}");

        [Test]
        public Task OwnHandlesAndHookLocalsAreNotFlagged() => Verify(@"
static class Program
{
    static void Run(HookedModule<Tensor, Tensor> m)
    {
        var list = new List<Tensor>();
        var shapes = new List<long[]>();
        m[""0""].register_forward_hook((mod, x, y) =>
        {
            list.Add(y.alias().DetachFromDisposeScope());   // its own handle
            list.Add(y.detach().clone());                    // a copy
            shapes.Add(y.shape);                             // not the tensor
            var local = new List<Tensor> { };
            local.Add(y);                                    // the hook's own local list
            Tensor z = y;                                    // a local of the hook
            return z.relu();
        });
    }
}");

        [Test]
        public Task LambdasThatAreNotHooksAreNotFlagged() => Verify(@"
static class Program
{
    static void Run(Tensor[] inputs)
    {
        var list = new List<Tensor>();
        Action<Tensor> keep = t => list.Add(t);
        Array.ForEach(inputs, t => list.Add(t));
    }
}");
    }
}
