using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Facade;

/// <summary>
/// A disposed facade refuses everything alike (issue 20, item 10): before, <c>m2.call</c> and <c>m2.Summary</c> threw
/// while <c>m2["head"].register_forward_hook(...)</c> registered a hook that fired and <c>m2.Trace()</c> worked. Everything
/// that is the facade's own now throws the same <see cref="ObjectDisposedException"/>, whose message says what to do;
/// the drop-in members still reach the model (which a facade's disposal leaves alone), as containers need.
/// </summary>
[TestFixture]
public class DisposedFacadeTests
{
    private const string Message =
        "This facade of a Sequential was disposed. Disposing a facade leaves the model, its parameters and its hooks alone; " +
        "call the model itself, or model.WithHooks() for a new facade.";

    [TearDown]
    public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

    private sealed class NoopModelHook : ModelHook { }

    private static Sequential NewModel() => nn.Sequential(("body", nn.Linear(2, 2)), ("head", nn.Linear(2, 2)));

    public static IEnumerable<TestCaseData> Uses()
    {
        TestCaseData Use(string name, Action<HookedModule<Tensor, Tensor>, Sequential> act) => new TestCaseData(act).SetArgDisplayNames(name);
        yield return Use("call", (m, s) => { using var x = ones(1, 2); m.call(x); });
        yield return Use("indexer", (m, s) => _ = m["head"]);
        yield return Use("Root", (m, s) => _ = m.Root);
        yield return Use("Paths", (m, s) => _ = m.Paths);
        yield return Use("register_forward_hook on m[path]", (m, s) => m["head"].register_forward_hook((mod, x, y) => null));
        yield return Use("register_forward_pre_hook on the facade", (m, s) => m.register_forward_pre_hook((mod, x) => null));
        yield return Use("register_forward_hook on the facade", (m, s) => m.register_forward_hook((mod, x, y) => null));
        yield return Use("register_full_backward_hook", (m, s) => m.register_full_backward_hook((mod, gi, go) => null));
        yield return Use("register_full_backward_pre_hook", (m, s) => m.register_full_backward_pre_hook((mod, go) => null));
        yield return Use("add_hook_to_module (call-path hook)", (m, s) => m.add_hook_to_module(new NoopModelHook()));
        yield return Use("At(module)", (m, model) => m.At((Linear)model[1]));
        yield return Use("HookPoints()", (m, s) => m.HookPoints());
        yield return Use("Hooks(register)", (m, s) => m.Hooks(() => { }));
        yield return Use("Hooks(fwd: ...)", (m, s) => m.Hooks(fwd: new (string, ForwardHook<Tensor, Tensor>)[] { ("head", (mod, x, y) => null) }));
        yield return Use("Trace()", (m, s) => m.Trace().Dispose());
        yield return Use("Summary(x)", (m, s) => { using var x = ones(1, 2); m.Summary(x); });
        yield return Use("CacheActivations()", (m, s) => m.CacheActivations().Dispose());
        yield return Use("RunWithCache(x)", (m, s) => { using var x = ones(1, 2); m.RunWithCache(x); });
        yield return Use("SetPrecision on m[path]", (m, s) => m["head"].SetPrecision(PrecisionPolicy.Float32()));
    }

    [TestCaseSource(nameof(Uses))]
    public void Disposed_facade_refuses_with_a_message_that_says_what_to_do(Action<HookedModule<Tensor, Tensor>, Sequential> use)
    {
        var model = NewModel();
        var m = model.WithHooks();
        m.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => use(m, model))!;
        Assert.That(e.Message, Does.StartWith(Message));
        Assert.That(model[1] is Linear head && head.weight is { IsInvalid: false }, Is.True, "the model is left alone");
    }

    [Test, Description("The drop-in members still reach the model: a Sequential holding a disposed facade can be trained, saved and disposed")]
    public void Drop_in_members_still_reach_the_model_so_containers_work()
    {
        var model = NewModel();
        var m = model.WithHooks();
        var outer = nn.Sequential(("inner", m));
        m.Dispose();
        Assert.That(m.parameters().Count(), Is.EqualTo(4));
        Assert.That(m.state_dict().Keys, Is.EquivalentTo(model.state_dict().Keys));
        outer.eval();
        Assert.That(model.training, Is.False);
        Assert.DoesNotThrow(() => outer.Dispose());
    }

    [Test, Description("Nothing is half-registered by a refused registration: the model's modules carry no hook afterwards, and a new facade works")]
    public void Refused_registration_leaves_no_hook_and_a_new_facade_works()
    {
        var model = NewModel();
        var m = model.WithHooks();
        m.Dispose();
        int fired = 0;
        Assert.Throws<ObjectDisposedException>(() => m["head"].register_forward_hook((mod, x, y) => { fired++; return null; }));
        Assert.That(m.Unwrap(), Is.SameAs(model), "Unwrap() still gives the model back");
        var fresh = model.WithHooks();
        Assert.That(fresh, Is.Not.SameAs(m));
        using var x = ones(1, 2);
        using (fresh.call(x)) { }
        Assert.That(fired, Is.EqualTo(0));
    }
}
